//! What a run found: one [`ScenarioResult`] per scenario and round, the
//! split-brain samples, the final check; written as JSON (everything) and as a
//! Markdown table (scenario × rounds), the form the README quotes.
//!
//! Rule: the report only describes; whether the run passed is decided from the
//! checks recorded in it ([`Report::ok`]), so the JSON and the exit status
//! cannot disagree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::{secs, Scenario};
use crate::iso8601_utc;
use crate::sampler::Round;

/// One invariant or expectation of a scenario, with its evidence.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// A fault, when it started (seconds since the run began) and the
/// write-unavailability window it caused.
#[derive(Debug, Clone)]
pub struct Event {
    pub label: String,
    pub at_s: f64,
    pub window_s: Option<f64>,
}

/// One scenario in one round.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub round: u32,
    pub skipped: Option<String>,
    pub started_s: f64,
    pub duration_s: f64,
    pub events: Vec<Event>,
    pub steps: Vec<Value>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    pub lost: u64,
    pub lost_ids: Vec<i64>,
    pub lost_wal_bytes: u64,
    pub split_brain_samples: usize,
    pub split_brain: Vec<Value>,
    pub converged: bool,
    pub converge_s: Option<f64>,
    pub converge_detail: String,
    pub acks: u64,
    pub write_errors: u64,
    pub reads: u64,
    pub read_errors: u64,
}

impl ScenarioResult {
    pub fn new(scenario: Scenario, round: u32) -> ScenarioResult {
        ScenarioResult {
            scenario,
            round,
            skipped: None,
            started_s: 0.0,
            duration_s: 0.0,
            events: Vec::new(),
            steps: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
            lost: 0,
            lost_ids: Vec::new(),
            lost_wal_bytes: 0,
            split_brain_samples: 0,
            split_brain: Vec::new(),
            converged: false,
            converge_s: None,
            converge_detail: String::new(),
            acks: 0,
            write_errors: 0,
            reads: 0,
            read_errors: 0,
        }
    }

    /// Every check passed (a skipped scenario passes).
    pub fn ok(&self) -> bool {
        self.skipped.is_some() || self.checks.iter().all(|c| c.ok)
    }

    /// `name: detail` of every failed check.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario.name(),
            "round": self.round,
            "skipped": self.skipped,
            "ok": self.ok(),
            "started_s": self.started_s,
            "duration_s": self.duration_s,
            "faults": self.events.iter().map(|e| json!({
                "label": e.label, "at_s": e.at_s, "write_unavailable_s": e.window_s,
            })).collect::<Vec<_>>(),
            "steps": self.steps,
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name, "ok": c.ok, "detail": c.detail,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "lost_acknowledged_writes": self.lost,
            "lost_ids": self.lost_ids,
            "lost_wal_bytes_past_fork": self.lost_wal_bytes,
            "split_brain_samples": self.split_brain_samples,
            "split_brain": self.split_brain,
            "converged": self.converged,
            "converge_s": self.converge_s,
            "converge_detail": self.converge_detail,
            "acknowledged_writes": self.acks,
            "write_errors": self.write_errors,
            "reads": self.reads,
            "read_errors": self.read_errors,
        })
    }
}

/// A whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub started_unix_ms: u64,
    pub finished_unix_ms: u64,
    pub settings: Value,
    pub results: Vec<ScenarioResult>,
    pub split_brains: Vec<Value>,
    pub final_check: Value,
    pub totals: Value,
    /// Operator actions the suite took to get a healthy cluster back after a
    /// scenario failed to converge (each one follows a reported failure).
    pub repairs: Vec<String>,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// Where the logs were kept (failed runs).
    pub logs: Option<String>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A sampling round with two primaries, for the report.
pub fn split_brain_json(r: &Round, run_start: Instant, names: &[String]) -> Value {
    json!({
        "at_s": secs(run_start, r.at),
        "at": iso8601_utc((r.unix_ms / 1000) as i64),
        "unix_ms": r.unix_ms,
        "primaries": r.primaries().iter().map(|i| names.get(*i).cloned().unwrap_or_default()).collect::<Vec<_>>(),
        "states": names.iter().zip(&r.states).map(|(n, s)| (n.clone(), json!(s.as_str()))).collect::<serde_json::Map<_, _>>(),
    })
}

impl Report {
    pub fn new() -> Report {
        Report {
            started_unix_ms: now_ms(),
            ..Report::default()
        }
    }

    /// Every invariant held and the run was not cut short.
    pub fn ok(&self) -> bool {
        self.aborted.is_none()
            && self.split_brains.is_empty()
            && self.results.iter().all(|r| r.ok())
            && self.final_check["ok"].as_bool().unwrap_or(false)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.ok(),
            "started": iso8601_utc((self.started_unix_ms / 1000) as i64),
            "finished": iso8601_utc((self.finished_unix_ms.max(self.started_unix_ms) / 1000) as i64),
            "settings": self.settings,
            "summary": self.summary(),
            "results": self.results.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "split_brains": self.split_brains,
            "final_check": self.final_check,
            "totals": self.totals,
            "repairs": self.repairs,
            "aborted": self.aborted,
            "logs": self.logs,
        })
    }

    /// Per scenario, over all rounds.
    fn summary(&self) -> Vec<Value> {
        self.rows()
            .into_iter()
            .map(|(s, row)| {
                json!({
                    "scenario": s.name(),
                    "rounds": row.rounds,
                    "skipped": row.skipped,
                    "write_unavailable_median_s": median(&row.windows),
                    "write_unavailable_max_s": row.windows.iter().cloned().fold(None, |m: Option<f64>, w| Some(m.map_or(w, |m| m.max(w)))),
                    "lost_acknowledged_writes": row.lost,
                    "split_brain_samples": row.split,
                    "converged": row.converged,
                    "failed_checks": row.failed,
                })
            })
            .collect()
    }

    fn rows(&self) -> Vec<(Scenario, Row)> {
        let mut rows: BTreeMap<usize, (Scenario, Row)> = BTreeMap::new();
        for r in &self.results {
            let key = Scenario::ALL
                .iter()
                .position(|s| *s == r.scenario)
                .unwrap_or(0);
            let row = &mut rows.entry(key).or_insert((r.scenario, Row::default())).1;
            if r.skipped.is_some() {
                row.skipped += 1;
                continue;
            }
            row.rounds += 1;
            row.windows
                .extend(r.events.iter().filter_map(|e| e.window_s));
            row.lost += r.lost;
            row.split += r.split_brain_samples;
            row.converged += usize::from(r.converged);
            row.converge_max = row.converge_max.max(r.converge_s.unwrap_or(0.0));
            row.failed += r.checks.iter().filter(|c| !c.ok).count();
        }
        rows.into_values().collect()
    }

    /// The Markdown table (scenario × rounds) with a header naming the date
    /// and the settings, and the failures underneath.
    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        out.push_str(&format!(
            "### Chaos suite — {} target, {}\n\n",
            s["target"].as_str().unwrap_or("?"),
            iso8601_utc((self.started_unix_ms / 1000) as i64)
        ));
        out.push_str(&format!(
            "Settings: ttl {} s, loop_wait {} s, retry_timeout {} s, maximum_lag_on_failover {} B, {} replication; \
             {} round(s), seed {}; a write every {} ms through HAProxy, every node sampled every {} ms; \
             convergence bound {} s; {} CPUs; commit {}.\n\n",
            s["ttl"], s["loop_wait"], s["retry_timeout"], s["maximum_lag_on_failover"],
            if s["synchronous_mode"].as_bool().unwrap_or(false) { "synchronous" } else { "asynchronous" },
            s["rounds"], s["seed"], s["write_every_ms"], s["sample_every_ms"],
            s["converge_timeout_s"], s["cpus"], s["git"].as_str().unwrap_or("?"),
        ));
        out.push_str(
            "| scenario | rounds | write gap median | write gap max | lost acked writes | split-brain samples | converged | failed checks |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for (sc, row) in self.rows() {
            if row.rounds == 0 {
                out.push_str(&format!("| {} | skipped | | | | | | |\n", sc.name()));
                continue;
            }
            let fmt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2} s"));
            let max = row
                .windows
                .iter()
                .cloned()
                .fold(None, |m: Option<f64>, w| Some(m.map_or(w, |m| m.max(w))));
            let converged = if row.converged == 0 {
                format!("0/{}", row.rounds)
            } else {
                format!(
                    "{}/{} (≤ {:.1} s)",
                    row.converged, row.rounds, row.converge_max
                )
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                sc.name(),
                row.rounds,
                fmt(median(&row.windows)),
                fmt(max),
                row.lost,
                row.split,
                converged,
                row.failed
            ));
        }
        let t = &self.totals;
        out.push_str(&format!(
            "\n{} acknowledged writes ({} failed attempts), {} reads through the replica port ({} failed), \
             {} sampling rounds, {:.0} s in all. Final check: {}. Result: **{}**.\n",
            t["acknowledged_writes"], t["write_errors"], t["reads"], t["read_errors"],
            t["sampler_rounds"], t["duration_s"].as_f64().unwrap_or(0.0),
            final_line(&self.final_check),
            if self.ok() { "PASS" } else { "FAIL" }
        ));
        let failures: Vec<String> = self
            .results
            .iter()
            .flat_map(|r| {
                r.failures()
                    .into_iter()
                    .map(move |f| format!("- {} round {}: {f}", r.scenario.name(), r.round))
            })
            .collect();
        if !failures.is_empty() || !self.split_brains.is_empty() || self.aborted.is_some() {
            out.push_str("\nFailures:\n\n");
            for f in failures {
                out.push_str(&f);
                out.push('\n');
            }
            for sb in self.split_brains.iter().take(10) {
                out.push_str(&format!(
                    "- split brain at {}: {}\n",
                    sb["at"], sb["states"]
                ));
            }
            if let Some(a) = &self.aborted {
                out.push_str(&format!("- run aborted: {a}\n"));
            }
        }
        if !self.repairs.is_empty() {
            out.push_str("\nRepairs the suite made to go on (operator actions):\n\n");
            for r in &self.repairs {
                out.push_str(&format!("- {r}\n"));
            }
        }
        out
    }

    /// Write `<dir>/<date>-<seed>.json`, `<dir>/<date>-<seed>.md` and
    /// `<dir>/latest.md`; returns the JSON path.
    pub fn write_files(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        // 2025-01-02T03:04:05+00:00 -> 20250102T030405Z
        let stamp: String = iso8601_utc((self.started_unix_ms / 1000) as i64)
            .replace("+00:00", "Z")
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .collect();
        let seed = self.settings["seed"].as_u64().unwrap_or(0);
        let sync = if self.settings["synchronous_mode"].as_bool().unwrap_or(false) {
            "-sync"
        } else {
            ""
        };
        let target = self.settings["target"].as_str().unwrap_or("x");
        let base = format!("{stamp}-{target}{sync}-{seed}");
        let json_path = dir.join(format!("{base}.json"));
        let text = serde_json::to_string_pretty(&self.to_json())?;
        std::fs::write(&json_path, text + "\n")
            .with_context(|| format!("write {}", json_path.display()))?;
        let md = self.markdown();
        std::fs::write(dir.join(format!("{base}.md")), &md)?;
        std::fs::write(dir.join("latest.md"), &md)?;
        Ok(json_path)
    }
}

fn final_line(v: &Value) -> String {
    if v.is_null() {
        return "not run".into();
    }
    if let Some(e) = v["error"].as_str() {
        return format!("failed ({e})");
    }
    format!(
        "{} of {} acknowledged writes on the final primary {}{}",
        v["acknowledged"].as_u64().unwrap_or(0) - v["missing"].as_u64().unwrap_or(0),
        v["acknowledged"],
        v["primary"].as_str().unwrap_or("?"),
        match v["missing"].as_u64() {
            Some(0) | None => String::new(),
            Some(n) => format!(" ({n} missing, reported above)"),
        }
    )
}

#[derive(Debug, Default)]
struct Row {
    rounds: usize,
    skipped: usize,
    windows: Vec<f64>,
    lost: u64,
    split: usize,
    converged: usize,
    converge_max: f64,
    failed: usize,
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn a_failed_check_fails_the_report() {
        let mut r = Report::new();
        r.final_check = json!({"ok": true});
        let mut s = ScenarioResult::new(Scenario::PrimaryCrash, 1);
        s.checks.push(Check {
            name: "x".into(),
            ok: true,
            detail: String::new(),
        });
        r.results.push(s.clone());
        assert!(r.ok());
        s.checks.push(Check {
            name: "y".into(),
            ok: false,
            detail: "broken".into(),
        });
        r.results.push(s);
        assert!(!r.ok());
        assert!(r.markdown().contains("y: broken"));
    }
}
