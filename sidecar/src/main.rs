//! `distlogd`: parse the command line and hand over to the library.

use clap::Parser as _;
use distlogd::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match &cli.command {
        Command::Run(args) => distlogd::run_daemon(args).map_err(Into::into),
        Command::Ctl(args) => distlogd::ctl::command::run(args),
        Command::Demo(args) => distlogd::demo::run(args).map_err(Into::into),
        Command::Tail(args) => distlogd::tail::run(args),
        Command::Tree(args) => distlogd::tree::run(args),
        Command::BenchStore(args) => distlogd::store::bench::run(args),
        Command::DemoService(args) => match distlogd::demo::service(args) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(3),
            Err(e) => Err(e.into()),
        },
    };
    if let Err(e) = result {
        distlogd::diag!("error: {e:#}");
        std::process::exit(1);
    }
}
