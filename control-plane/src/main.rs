//! `control-plane`: admin API server and CLI.

fn main() {}
