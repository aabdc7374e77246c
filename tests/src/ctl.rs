//! Running the operator CLIs — our `agentctl` and Patroni's own `patronictl` —
//! the way an operator runs them from a shell, and capturing what they did.
//!
//! Rule: every run has a deadline and reads stdin from `/dev/null` unless the
//! test gives it input, so a CLI that prompts or hangs fails the test with what
//! it printed so far instead of hanging CI. A missing `patronictl` is a panic
//! naming how to install it, never a skipped test.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use serde_json::Value;

use crate::bins::agent_binaries;
use crate::wait::wait_for_result;

/// Where CI installs patronictl (a Python venv); `PATRONICTL` overrides it.
pub const PATRONICTL_DEFAULT: &str = "/opt/patroni-venv/bin/patronictl";

/// How to install patronictl where [`patronictl_path`] looks for it.
pub const PATRONICTL_INSTALL: &str = "apt-get install python3-venv && \
     python3 -m venv /opt/patroni-venv && \
     /opt/patroni-venv/bin/pip install 'patroni[etcd3]' psycopg2-binary";

/// How long a CLI run may take by default: longer than agentctl's own limit on
/// watching a switchover (60 s), so its messages, not our deadline, explain a
/// slow one.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// Variables that would silently change what a CLI does: its config file and
/// etcd overrides, the `PATRONI_*` settings, libpq's `PG*`, proxies (the REST
/// calls go to loopback), and editors (nothing may open one in a test).
fn scrubbed(var: &str) -> bool {
    let upper = var.to_ascii_uppercase();
    upper.starts_with("PATRONI")
        || upper.starts_with("PG")
        || upper == "DCS_URL"
        || upper.ends_with("_PROXY")
        || upper == "EDITOR"
        || upper == "VISUAL"
}

/// `PATRONICTL` (a path) or [`PATRONICTL_DEFAULT`], or a panic that says how to
/// install it.
pub fn patronictl_path() -> PathBuf {
    let (path, from) = match std::env::var_os("PATRONICTL") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "the PATRONICTL environment variable"),
        _ => (PathBuf::from(PATRONICTL_DEFAULT), "the default location"),
    };
    let executable = path
        .metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    if !executable {
        panic!(
            "missing patronictl: {} (from {from}) is not an executable file. These tests run \
             Patroni's own CLI against our agents; install it with `{PATRONICTL_INSTALL}` \
             (or point PATRONICTL at a patronictl 4.x with the etcd3 extra)",
            path.display()
        );
    }
    path
}

/// A CLI bound to a configuration file (`-c <config>`), run with a deadline.
#[derive(Debug, Clone)]
pub struct Cli {
    program: PathBuf,
    base_args: Vec<OsString>,
    timeout: Duration,
    env: Vec<(String, String)>,
}

impl Cli {
    /// `agentctl -c <config>` (built and staged by [`agent_binaries`]).
    pub fn agentctl(config: &Path) -> Cli {
        Cli::new(&agent_binaries().agentctl).config(config)
    }

    /// `patronictl -c <config>` (found by [`patronictl_path`]).
    pub fn patronictl(config: &Path) -> Cli {
        Cli::new(&patronictl_path()).config(config)
    }

    /// `program` without arguments yet.
    pub fn new(program: &Path) -> Cli {
        Cli {
            program: program.to_path_buf(),
            base_args: Vec::new(),
            timeout: CLI_TIMEOUT,
            env: Vec::new(),
        }
    }

    /// Add `-c <config>` before the verb.
    pub fn config(mut self, config: &Path) -> Cli {
        self.base_args.push("-c".into());
        self.base_args.push(config.as_os_str().to_owned());
        self
    }

    /// Another deadline than [`CLI_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Cli {
        self.timeout = timeout;
        self
    }

    /// Set an environment variable for every run (after the scrubbing).
    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Run with `args` after the configuration, stdin from `/dev/null`.
    pub async fn run(&self, args: &[&str]) -> CliRun {
        self.run_inner(args, None).await
    }

    /// Run with `args`, writing `input` to stdin (then closing it).
    pub async fn run_with_input(&self, args: &[&str], input: &str) -> CliRun {
        self.run_inner(args, Some(input.as_bytes().to_vec())).await
    }

    async fn run_inner(&self, args: &[&str], input: Option<Vec<u8>>) -> CliRun {
        let mut all: Vec<OsString> = self.base_args.clone();
        all.extend(args.iter().map(OsString::from));
        let command = std::iter::once(self.program.as_os_str().to_owned())
            .chain(all.iter().cloned())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");

        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&all)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if scrubbed(&k) {
                cmd.env_remove(k.as_ref());
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }

        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            // A CLI that exits without reading its input closes the pipe: not our error.
            let _ = stdin.write_all(&data).await;
        }
        let read_all = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf).await;
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let stdout = read_all(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        );
        let stderr = read_all(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        );

        let (code, timed_out) = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) => (status.code(), false),
            Ok(Err(e)) => panic!("cannot wait for {command}: {e}"),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                (None, true)
            }
        };
        let elapsed = started.elapsed();
        CliRun {
            command,
            code,
            timed_out,
            stdout: stdout.await.unwrap_or_default(),
            stderr: stderr.await.unwrap_or_default(),
            elapsed,
            timeout: self.timeout,
        }
    }

    /// `switchover [<scope>] --leader <leader> --candidate <candidate> --force`,
    /// which must succeed and report `Successfully switched over to
    /// "<candidate>"`; the run, for further checks. For `agentctl` and
    /// `patronictl` alike.
    pub async fn switchover(&self, scope: Option<&str>, leader: &str, candidate: &str) -> CliRun {
        let mut args = vec!["switchover"];
        args.extend(scope);
        args.extend(["--leader", leader, "--candidate", candidate, "--force"]);
        let run = self.run(&args).await;
        run.assert_success()
            .assert_stdout_contains(&format!("Successfully switched over to \"{candidate}\""));
        run
    }

    /// Wait (up to 60 s) until `list -f json` shows `leader` as Leader and
    /// every other member as a streaming Replica on timeline `tl` with no lag
    /// (a replica that has just started may publish a stale position for a
    /// cycle, and a switchover to it would rightly be refused as lagging).
    /// For `agentctl` and `patronictl` alike.
    pub async fn wait_list_settled(&self, leader: &str, tl: u64) {
        wait_for_result(
            "list to show the leader and streaming replicas",
            Duration::from_secs(60),
            Duration::from_millis(300),
            || async move {
                let run = self.run(&["list", "-f", "json"]).await;
                if run.code != Some(0) {
                    return Err(run.to_string());
                }
                let rows: Value =
                    serde_json::from_str(run.stdout.trim()).map_err(|e| format!("{e}\n{run}"))?;
                for r in rows.as_array().ok_or(format!("not a list\n{run}"))? {
                    let want = if r["Member"] == leader {
                        ("Leader", "running")
                    } else {
                        ("Replica", "streaming")
                    };
                    if r["Role"] != want.0 || r["State"] != want.1 || r["TL"] != tl {
                        return Err(format!("{r}"));
                    }
                    if want.0 == "Replica" && (r["Receive Lag"] != 0 || r["Replay Lag"] != 0) {
                        return Err(format!("lagging: {r}"));
                    }
                }
                Ok(())
            },
        )
        .await
    }
}

/// What one CLI run did. `Display` shows all of it, for assertion messages.
#[derive(Debug, Clone)]
pub struct CliRun {
    /// The command line, for messages.
    pub command: String,
    /// The exit code; `None` when killed (also after a timeout).
    pub code: Option<i32>,
    /// True when the run was killed at its deadline.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    timeout: Duration,
}

impl CliRun {
    /// Panic (showing everything) unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &CliRun {
        if self.code != Some(code) {
            panic!("expected exit code {code}\n{self}");
        }
        self
    }

    /// Panic unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &CliRun {
        self.assert_code(0)
    }

    /// Panic unless it exited by itself with a non-zero code.
    #[track_caller]
    pub fn assert_failure(&self) -> &CliRun {
        match self.code {
            Some(c) if c != 0 => self,
            _ => panic!("expected a non-zero exit code\n{self}"),
        }
    }

    /// Panic unless stdout contains `text`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, text: &str) -> &CliRun {
        if !self.stdout.contains(text) {
            panic!("expected {text:?} on stdout\n{self}");
        }
        self
    }

    /// Panic unless stderr contains `text`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, text: &str) -> &CliRun {
        if !self.stderr.contains(text) {
            panic!("expected {text:?} on stderr\n{self}");
        }
        self
    }

    /// stdout then stderr, for checks that do not care where a message went.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for CliRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match (self.timed_out, self.code) {
            (true, _) => format!("killed after the {:?} deadline", self.timeout),
            (false, Some(c)) => format!("exit code {c}"),
            (false, None) => "killed by a signal".to_string(),
        };
        write!(
            f,
            "$ {}\n({how}, {:.2} s)\n----- stdout -----\n{}\n----- stderr -----\n{}\n------------------",
            self.command,
            self.elapsed.as_secs_f64(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// One bordered table as patronictl and agentctl print it (`list`, `topology`,
/// `history`): the top rule (which carries `Cluster: <name> (<system id>)`),
/// the column names and the cells, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTable {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl TextTable {
    /// The index of the first column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The first row whose `column` cell is `value`.
    pub fn row_where(&self, column: &str, value: &str) -> Option<&[String]> {
        let i = self.column(column)?;
        self.rows
            .iter()
            .find(|r| r.get(i).map(String::as_str) == Some(value))
            .map(Vec::as_slice)
    }

    /// The `column` cell of `row` ("" when there is no such column).
    pub fn cell<'a>(&self, row: &'a [String], column: &str) -> &'a str {
        self.column(column)
            .and_then(|i| row.get(i))
            .map(String::as_str)
            .unwrap_or("")
    }
}

fn cells(line: &str) -> Vec<String> {
    let inner = line
        .trim_end()
        .trim_start_matches('|')
        .trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// Every bordered table in `text`. A table is a run of lines starting with `+`
/// or `|`; a rule carrying a title (`+ Cluster: ...`) starts a new one, since
/// `list` prints the tables of several clusters back to back.
pub fn parse_tables(text: &str) -> Vec<TextTable> {
    let mut tables: Vec<TextTable> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        let t = line.trim_end();
        if t.starts_with('+') {
            let titled = t.chars().any(|c| c != '+' && c != '-');
            if !open || titled {
                tables.push(TextTable {
                    title: if titled { t.to_string() } else { String::new() },
                    columns: Vec::new(),
                    rows: Vec::new(),
                });
                open = true;
            }
        } else if t.starts_with('|') && open {
            let table = tables.last_mut().expect("an open table exists");
            if table.columns.is_empty() {
                table.columns = cells(t);
            } else {
                table.rows.push(cells(t));
            }
        } else {
            open = false;
        }
    }
    tables
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds as ISO 8601 in UTC (`2026-11-22T04:00:00+00:00`), for
/// `--scheduled`.
pub fn iso8601_utc(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_split_and_read() {
        let text = "\
Current cluster topology
+ Cluster: demo (7) ----+----+
| Member | Role   | TL | Lag | Lag |
+--------+--------+----+-----+-----+
| node0  | Leader |  1 |     |     |
| node1  | Replica|  1 |   0 |   0 |
+--------+--------+----+-----+-----+
+ Cluster: other (8) ---+----+
| Member | Role   |
+--------+--------+
| a      | Leader |
+--------+--------+
done
+----+-----+
| TL | LSN |
+----+-----+
+----+-----+
";
        let t = parse_tables(text);
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t[0].title.starts_with("+ Cluster: demo (7)"));
        assert_eq!(t[0].columns, ["Member", "Role", "TL", "Lag", "Lag"]);
        let row = t[0].row_where("Member", "node1").unwrap();
        assert_eq!(t[0].cell(row, "Role"), "Replica");
        assert_eq!(t[0].cell(row, "TL"), "1");
        assert_eq!(t[0].cell(row, "Nope"), "");
        assert_eq!(t[1].rows, vec![vec!["a".to_string(), "Leader".to_string()]]);
        assert_eq!(t[2].title, "");
        assert_eq!(t[2].columns, ["TL", "LSN"]);
        assert!(t[2].rows.is_empty());
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso8601_utc(1_795_000_000), "2026-11-18T11:06:40+00:00");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00+00:00");
    }
}
