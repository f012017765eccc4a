use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = decnet::cli::Cli::parse();
    decnet::cli::run(cli)
}
