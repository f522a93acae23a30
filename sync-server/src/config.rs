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
    /// Replace the stored catalogue with this Open311 service list (with "definitions").
    /// A new data directory starts with the Toronto catalogue.
    #[arg(long, env = "CURBSIDE_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Key that lets a device register as an inspector (with its wards). No key: residents only.
    #[arg(long, env = "CURBSIDE_ADMIN_KEY")]
    pub admin_key: Option<String>,
    /// The Open311 jurisdiction_id this server answers for.
    #[arg(long, env = "CURBSIDE_JURISDICTION", default_value = "toronto.ca")]
    pub jurisdiction: String,
    /// Days overwritten values and removals are kept for devices that are offline; a device
    /// away longer resyncs in full. Longer than the longest offline shift you expect.
    /// Changes stamped earlier than this are refused.
    #[arg(long, env = "CURBSIDE_RETENTION_DAYS", default_value_t = 180,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_days: u32,
}
