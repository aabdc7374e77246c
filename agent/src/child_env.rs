//! The environment of every child the agent starts (postgres, initdb, pg_basebackup,
//! pg_rewind, pg_controldata, scripts, the fence watchdog).
//!
//! Rule: children never inherit the agent's environment. It may hold
//! `PATRONI_*_PASSWORD`, `PGPASSWORD` and other secrets, and `/proc/<pid>/environ`
//! of a long-lived postmaster is readable by its owner and by root for as long as it
//! runs. A child gets only the variables below (locale, time zone, search path,
//! home and user), plus what its caller adds explicitly (`PGPASSFILE`, never a
//! password).

use std::ffi::{OsStr, OsString};

/// Inherited variables, by exact name; and every `LC_*`.
const KEEP: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

/// Whether the variable `name` is passed on to children.
pub fn inherited(name: &OsStr) -> bool {
    let Some(n) = name.to_str() else {
        return false;
    };
    KEEP.contains(&n) || n.starts_with("LC_")
}

/// The inherited part of `vars` (the agent's environment, for a test: any list).
pub fn scrub(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    vars.into_iter().filter(|(k, _)| inherited(k)).collect()
}

/// A command for `program` with the scrubbed environment.
pub fn command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear().envs(scrub(std::env::vars_os()));
    cmd
}

/// [`command`] for a blocking `std::process::Command`.
pub fn std_command(program: impl AsRef<OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env_clear().envs(scrub(std::env::vars_os()));
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_locale_path_and_identity_pass() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("LC_ALL", "C"),
            ("HOME", "/var/lib/postgresql"),
            ("PATRONI_SUPERUSER_PASSWORD", "s3cret"),
            ("PATRONI_NAME", "node1"),
            ("PGPASSWORD", "s3cret"),
            ("PGPASSFILE", "/x"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<String> = scrub(vars)
            .into_iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept, vec!["PATH", "LC_ALL", "HOME"]);
    }
}
