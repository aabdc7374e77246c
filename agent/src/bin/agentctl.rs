//! `agentctl`: the operator CLI (patronictl's verbs and flags); the logic is in `agent::ctl`.

fn main() -> std::process::ExitCode {
    agent::ctl::main()
}
