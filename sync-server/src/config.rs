//! Command-line flags and their environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "curbside-server",
    version,
    about = "Curbside sync server and Open311 API"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CURBSIDE_ADDR", default_value = "127.0.0.1:8311")]
    pub addr: SocketAddr,
    /// Where the server keeps its SQLite store.
    #[arg(long, env = "CURBSIDE_DATA_DIR", default_value = "curbside-data")]
    pub data_dir: PathBuf,
    /// Where the server keeps its records: `sqlite` (a file in the data directory, the
    /// default) or a PostgreSQL URL (`postgres://user@host:port/db`), so several instances can
    /// share one database (they share the data directory's `media/` too). Give a URL through
    /// the environment rather than a flag, which `ps` shows, and a password through
    /// PGPASSWORD.
    #[arg(long, env = "CURBSIDE_DATABASE", default_value = "sqlite")]
    pub database: String,
    /// Replace the stored catalogue with this Open311 service list (with "definitions").
    /// A new data directory starts with the Toronto catalogue.
    #[arg(long, env = "CURBSIDE_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Key that lets a device register as an inspector (with its wards). Never a flag, which
    /// `ps` would show: from CURBSIDE_ADMIN_KEY or `--admin-key-file`. None: residents only.
    #[arg(skip)]
    pub admin_key: Option<String>,
    /// A file holding the admin key (its first line).
    #[arg(long, env = "CURBSIDE_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,
    /// The Open311 jurisdiction_id this server answers for.
    #[arg(long, env = "CURBSIDE_JURISDICTION", default_value = "toronto.ca")]
    pub jurisdiction: String,
    /// The URL clients reach this server at, as discovery and media URLs give it (never taken
    /// from a request's Host header). Default: http:// and the listening address.
    #[arg(long, env = "CURBSIDE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Days overwritten values and removals are kept for devices that are offline; a device
    /// away longer resyncs in full. Longer than the longest offline shift you expect.
    /// Changes stamped earlier than this are refused.
    #[arg(long, env = "CURBSIDE_RETENTION_DAYS", default_value_t = 180,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_days: u32,
    #[command(flatten)]
    pub limits: Limits,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What one device, address or connection may ask of the server.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Syncs one device may make per minute (and at once, as a burst of a fifth of that).
    #[arg(long, env = "CURBSIDE_SYNCS_PER_MINUTE", default_value_t = 120)]
    pub syncs_per_minute: u32,
    /// Photo requests (HEAD, PATCH, GET) one device may make per minute.
    #[arg(long, env = "CURBSIDE_MEDIA_PER_MINUTE", default_value_t = 600)]
    pub media_per_minute: u32,
    /// Requests one Open311 API key may post per minute (a burst of a fifth of that).
    #[arg(long, env = "CURBSIDE_OPEN311_POSTS_PER_MINUTE", default_value_t = 600)]
    pub open311_posts_per_minute: u32,
    /// Registrations one client address may make per hour.
    #[arg(long, env = "CURBSIDE_REGISTRATIONS_PER_HOUR", default_value_t = 60)]
    pub registrations_per_hour: u32,
    /// Requests of any kind one client address may make per second: generous, since many
    /// phones share a carrier's address.
    #[arg(long, env = "CURBSIDE_ADDRESS_PER_SECOND", default_value_t = 500)]
    pub address_per_second: u32,
    /// New connections one client address may open per minute (a burst of a fifth of that);
    /// beyond it a connection is closed as soon as it is accepted.
    #[arg(long, env = "CURBSIDE_CONNECTIONS_PER_MINUTE", default_value_t = 600)]
    pub connections_per_minute: u32,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, env = "CURBSIDE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (and an idle connection stays open).
    #[arg(
        long = "header-timeout",
        env = "CURBSIDE_HEADER_TIMEOUT",
        default_value_t = 10
    )]
    pub header_timeout_s: u64,
    /// Seconds a request may take, its body included.
    #[arg(
        long = "request-timeout",
        env = "CURBSIDE_REQUEST_TIMEOUT",
        default_value_t = 30
    )]
    pub request_timeout_s: u64,
    /// Seconds requests in flight get to finish after SIGTERM before the server exits anyway.
    #[arg(
        long = "shutdown-grace",
        env = "CURBSIDE_SHUTDOWN_GRACE",
        default_value_t = 10
    )]
    pub shutdown_grace_s: u64,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Serve (the default).
    Serve,
    /// Registered devices: list them, or revoke one's token.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Open311 API keys (for `POST requests`): create, list, revoke.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Makes a key and prints it once: only its hash is kept.
    Create {
        /// Who the key is for (an app, a back office), as operators will read it.
        label: String,
    },
    /// Every key: id, label, created, revoked (never the key itself).
    List,
    /// Revokes a key: posts with it get 403. What it posted stays.
    Revoke { key_id: String },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeviceCommand {
    /// Every registered device: id, role, wards, registered, revoked.
    List,
    /// Revokes a device's token: its next request gets 401. Its reports stay.
    Revoke { device_id: String },
}

impl Config {
    /// The defaults for a data directory, as if started with no flags or environment.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        let mut c = <Config as clap::Parser>::parse_from(["curbside-server"]);
        c.data_dir = data_dir.into();
        c.addr = "127.0.0.1:0".parse().expect("an address");
        c
    }

    /// Reads the admin key from CURBSIDE_ADMIN_KEY or the key file.
    pub fn read_admin_key(&mut self) -> Result<(), String> {
        let key = match (&self.admin_key_file, std::env::var("CURBSIDE_ADMIN_KEY")) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|e| format!("admin key file {}: {e}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            (None, Ok(key)) => key.trim().to_string(),
            (None, Err(_)) => String::new(),
        };
        self.admin_key = (!key.is_empty()).then_some(key);
        Ok(())
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.addr),
        }
    }
}
