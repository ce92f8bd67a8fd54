//! The `accord` command: every role of a federation, and the demo that runs them all.
fn main() -> std::process::ExitCode {
    accord::cli::main()
}
