fn main() -> std::process::ExitCode {
    xhyve_manager::manager::cli::main()
}
