//! `control-plane`: the admin API server and the command line. Everything
//! but argument parsing and exit codes lives in the library.

use clap::Parser;
use control_plane::Db;
use control_plane::cli::{Cli, run_domain};
use control_plane::config::Config;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(db) = cli.db {
        config.db = db;
    }
    if let Some(store) = cli.store {
        config.store = store;
    }
    let db = match Db::open(&config.db) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: {}: {e}", config.db.display());
            return ExitCode::from(1);
        }
    };
    match run_domain(&db, &config, cli.command) {
        Ok(v) => {
            match v {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => print!("{s}"),
                v => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
