//! `curbside`: the core from a terminal, for field laptops, scripts and demos. Every command
//! takes `--json` for scripting; errors are one line on stderr (or a JSON object with `--json`)
//! and a non-zero exit.

mod edit;
mod output;
mod remote;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use curbside_core::geo::{BoundaryOptions, Jurisdiction};
use curbside_core::{photo, Catalog, Error, Location, LocationSource, PhotoOptions, State, Store};

use edit::EditArgs;
use output::Out;

#[derive(Parser)]
#[command(
    name = "curbside",
    version,
    about = "Report city problems offline (311)"
)]
struct Cli {
    /// The store file (created when missing).
    #[arg(
        long,
        global = true,
        env = "CURBSIDE_DB",
        default_value = "curbside.db"
    )]
    db: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the services residents can report.
    Services,
    /// Show a service and the questions its form asks.
    Service { code: String },
    /// Replace or export the service catalogue.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Write, check and queue requests offline.
    #[command(subcommand)]
    Draft(Box<DraftCommand>),
    /// The ward holding a point (no store needed).
    Ward {
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        /// GeoJSON ward boundaries instead of Toronto's 25 wards.
        #[arg(long)]
        boundaries: Option<PathBuf>,
        /// The property holding a ward's code (with --boundaries).
        #[arg(long, default_value = "AREA_S_CD")]
        code_property: String,
        /// The property holding a ward's name (with --boundaries).
        #[arg(long, default_value = "AREA_NAME")]
        name_property: String,
    },
    /// Open requests of a service near a point that may be the same problem.
    Nearby {
        code: String,
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        /// Accuracy of the point, in metres.
        #[arg(long)]
        accuracy: Option<f64>,
    },
    /// Requests known from the server (the cache duplicate detection reads).
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Register this device with a sync server (a resident, or an inspector with wards).
    Register {
        #[arg(long)]
        server: String,
        /// resident (default) or inspector
        #[arg(long)]
        role: Option<String>,
        /// An inspector's wards, comma-separated codes (e.g. 10,11).
        #[arg(long)]
        wards: Option<String>,
        /// The server's admin key, which grants the inspector role.
        #[arg(long, env = "CURBSIDE_ADMIN_KEY")]
        admin_key: Option<String>,
    },
    /// Push what is pending and pull what is new; photos are uploaded after their requests.
    Sync {
        /// Register as a resident with this server first, if not registered yet.
        #[arg(long)]
        server: Option<String>,
    },
    /// Act on requests that have left the device: status, notes, assignment, history.
    #[command(subcommand)]
    Request(remote::RequestCommand),
    /// Run the photo pipeline on a file (no store needed): orientation, resize, byte budget,
    /// no metadata.
    Photo {
        input: PathBuf,
        /// Where to write the processed JPEG.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Long edge of the result, in pixels.
        #[arg(long, default_value_t = 1600)]
        max_edge: u32,
        /// Largest encoded size, in bytes.
        #[arg(long, default_value_t = 500_000)]
        budget: usize,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Import an Open311 service list (array or {"services":[…]}, optionally with
    /// "definitions"), plus definition files (`services/{code}.json`).
    Import {
        file: PathBuf,
        #[arg(long = "definition")]
        definitions: Vec<PathBuf>,
    },
    /// Print the catalogue in the form `catalog import` reads.
    Export,
}

#[derive(Subcommand)]
enum RequestsCommand {
    /// Import an Open311 requests.json (e.g. a city's GET requests.json) into the cache.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum DraftCommand {
    /// Start a draft for a service.
    New {
        code: String,
        #[command(flatten)]
        edit: EditArgs,
    },
    /// Newest first.
    List {
        /// draft, queued, sent, accepted, in_progress, scheduled, completed, cancelled
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Show {
        id: String,
    },
    /// Change a draft's fields.
    Set {
        id: String,
        #[command(flatten)]
        edit: EditArgs,
    },
    /// Validate and queue for sending; lists every problem otherwise.
    Submit {
        id: String,
    },
    /// Take a queued request back to a draft.
    Withdraw {
        id: String,
    },
    /// Delete a request that has not been sent.
    Delete {
        id: String,
    },
    /// Attach a photo (processed first: upright, ≤ 1,600 px, ≤ 500 KB, no metadata).
    Attach {
        id: String,
        photo: PathBuf,
    },
    /// List a draft's photos.
    Photos {
        id: String,
    },
    /// Remove a photo from a draft.
    Detach {
        id: String,
        sha256: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out { json: cli.json };
    match run(cli, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            match e {
                Error::Invalid(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn run(cli: Cli, out: &Out) -> Result<(), Error> {
    if let Command::Photo {
        input,
        out: path,
        max_edge,
        budget,
    } = &cli.command
    {
        let options = PhotoOptions {
            max_edge: *max_edge,
            budget_bytes: *budget,
            ..PhotoOptions::default()
        };
        let bytes = read(input)?;
        let (processed, took) = photo::timed(|| photo::process(&bytes, &options));
        let processed = processed?;
        if let Some(path) = path {
            std::fs::write(path, &processed.jpeg).map_err(|e| {
                Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                ))
            })?;
        }
        out.photo(&processed, bytes.len(), took);
        return Ok(());
    }
    if let Command::Ward {
        lat,
        lon,
        boundaries,
        code_property,
        name_property,
    } = &cli.command
    {
        let jurisdiction = match boundaries {
            None => Jurisdiction::toronto(),
            Some(path) => Jurisdiction::from_geojson(
                &read(path)?,
                &BoundaryOptions::new(code_property, name_property),
            )?,
        };
        out.ward(jurisdiction.ward_at(*lat, *lon)?);
        return Ok(());
    }
    let store = Store::open(&cli.db)?;
    match cli.command {
        Command::Services => out.services(&store.services()?),
        Command::Service { code } => out.service(&store.service(&code)?, &store.definition(&code)?),
        Command::Catalog(CatalogCommand::Import { file, definitions }) => {
            let mut catalog = Catalog::parse(&read(&file)?)?;
            for d in &definitions {
                catalog.add_definition_json(&read(d)?)?;
            }
            store.import_catalog(&catalog)?;
            out.done(&format!(
                "imported {} services ({} with definitions)",
                catalog.services.len(),
                catalog.definitions.len()
            ));
        }
        Command::Catalog(CatalogCommand::Export) => {
            let mut catalog = Catalog {
                services: store.services()?,
                definitions: Vec::new(),
            };
            for s in &catalog.services {
                let d = store.definition(&s.code)?;
                if !d.attributes.is_empty() {
                    catalog.definitions.push(d);
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&catalog.to_json()).expect("JSON")
            );
        }
        Command::Draft(command) => draft(&store, *command, out)?,
        Command::Photo { .. } | Command::Ward { .. } => {
            unreachable!("handled before the store is opened")
        }
        Command::Nearby {
            code,
            lat,
            lon,
            accuracy,
        } => {
            let at = Location::new(lat, lon, accuracy, LocationSource::MapPin)
                .map_err(Error::invalid)?;
            out.nearby(&store.nearby(&code, &at, None)?);
        }
        Command::Register {
            server,
            role,
            wards,
            admin_key,
        } => remote::register(&store, &server, role, wards, admin_key, out)?,
        Command::Sync { server } => {
            if let Some(server) = server {
                match store.registration()? {
                    Some(r) if r.server == server.trim().trim_end_matches('/') => {}
                    Some(r) => {
                        return Err(Error::invalid(curbside_core::Problem::new(
                            "server",
                            curbside_core::ProblemKind::OutOfRange,
                            format!(
                                "this store is registered with {}; register again to change",
                                r.server
                            ),
                        )))
                    }
                    None => remote::register(&store, &server, None, None, None, out)?,
                }
            }
            remote::sync(&store, out)?
        }
        Command::Request(command) => remote::request(&store, command, out)?,
        Command::Requests(RequestsCommand::Import { file }) => {
            let requests = curbside_core::known::parse_open311_requests(&read(&file)?)?;
            store.cache_requests(&requests)?;
            let open = requests.iter().filter(|r| r.open).count();
            out.done(&format!("cached {} requests ({open} open)", requests.len()));
        }
    }
    Ok(())
}

fn draft(store: &Store, command: DraftCommand, out: &Out) -> Result<(), Error> {
    match command {
        DraftCommand::New { code, edit } => {
            let id = store.create_draft(&code, &edit.into_edit(None)?)?;
            out.draft(&store.draft(&id)?, &store.validate_draft(&id)?);
        }
        DraftCommand::List { state, limit } => {
            let state = state
                .map(|s| {
                    State::parse(&s).ok_or_else(|| {
                        Error::Invalid(vec![curbside_core::Problem::new(
                            "state",
                            curbside_core::ProblemKind::OutOfRange,
                            format!(
                                "{s:?} is not one of: {}",
                                State::ALL.map(State::as_str).join(", ")
                            ),
                        )])
                    })
                })
                .transpose()?;
            out.drafts(&store.drafts(state, limit)?);
        }
        DraftCommand::Show { id } => out.draft(&store.draft(&id)?, &store.validate_draft(&id)?),
        DraftCommand::Set { id, edit } => {
            let current = store.draft(&id)?;
            store.edit_draft(&id, &edit.into_edit(Some(&current))?)?;
            out.draft(&store.draft(&id)?, &store.validate_draft(&id)?);
        }
        DraftCommand::Submit { id } => {
            store.submit_draft(&id)?;
            out.draft(&store.draft(&id)?, &[]);
        }
        DraftCommand::Withdraw { id } => {
            store.withdraw_draft(&id)?;
            out.draft(&store.draft(&id)?, &store.validate_draft(&id)?);
        }
        DraftCommand::Attach { id, photo } => {
            let attached = store.attach_photo(&id, &read(&photo)?)?;
            out.attached(&attached);
        }
        DraftCommand::Photos { id } => out.photos(&store.photos(&id)?),
        DraftCommand::Detach { id, sha256 } => {
            store.detach_photo(&id, &sha256)?;
            out.done(&format!("removed photo {sha256}"));
        }
        DraftCommand::Delete { id } => {
            store.delete_draft(&id)?;
            out.done(&format!("deleted {id}"));
        }
    }
    Ok(())
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    })
}
