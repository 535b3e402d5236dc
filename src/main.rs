//! The `atlas` binary: a thin shell over the library (see `atlas::cli`).

fn main() -> std::process::ExitCode {
    atlas::cli::main()
}
