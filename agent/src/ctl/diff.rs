//! A unified diff of two texts, laid out as Python's `difflib.unified_diff` (what
//! `patronictl edit-config` prints): `--- `/`+++ ` headers without file names,
//! hunks with 3 lines of context. Pure.

/// One run of lines: equal in both, only in the old text, or only in the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Equal,
    Delete,
    Insert,
    Replace,
}

/// `(tag, old_start, old_end, new_start, new_end)` as difflib's opcodes.
type Opcode = (Tag, usize, usize, usize, usize);

const CONTEXT: usize = 3;

/// Lines as patronictl splits them: trailing newlines dropped, then split on `\n`.
fn lines(s: &str) -> Vec<&str> {
    s.trim_end_matches('\n').split('\n').collect()
}

/// Longest-common-subsequence edit script, as opcodes (deletions before insertions).
fn opcodes(a: &[&str], b: &[&str]) -> Vec<Opcode> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: LCS length of a[i..] and b[j..]
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut steps = Vec::new(); // (Equal|Delete|Insert) per line
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            steps.push(Tag::Equal);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] > lcs[i + 1][j]) {
            steps.push(Tag::Insert);
            j += 1;
        } else {
            steps.push(Tag::Delete);
            i += 1;
        }
    }
    // merge runs: equal runs stay, any mix of deletes/inserts between equals is one op
    let mut codes: Vec<Opcode> = Vec::new();
    let (mut i, mut j) = (0, 0);
    let mut k = 0;
    while k < steps.len() {
        let (i0, j0) = (i, j);
        if steps[k] == Tag::Equal {
            while k < steps.len() && steps[k] == Tag::Equal {
                i += 1;
                j += 1;
                k += 1;
            }
            codes.push((Tag::Equal, i0, i, j0, j));
        } else {
            while k < steps.len() && steps[k] != Tag::Equal {
                if steps[k] == Tag::Delete {
                    i += 1;
                } else {
                    j += 1;
                }
                k += 1;
            }
            let tag = match (i > i0, j > j0) {
                (true, true) => Tag::Replace,
                (true, false) => Tag::Delete,
                _ => Tag::Insert,
            };
            codes.push((tag, i0, i, j0, j));
        }
    }
    codes
}

/// difflib's `get_grouped_opcodes`: hunks with `n` lines of context.
fn grouped(mut codes: Vec<Opcode>, n: usize) -> Vec<Vec<Opcode>> {
    if codes.is_empty() {
        codes.push((Tag::Equal, 0, 1, 0, 1));
    }
    if let Some(first) = codes.first_mut() {
        if first.0 == Tag::Equal {
            let (t, i1, i2, j1, j2) = *first;
            *first = (
                t,
                i1.max(i2.saturating_sub(n)),
                i2,
                j1.max(j2.saturating_sub(n)),
                j2,
            );
        }
    }
    if let Some(last) = codes.last_mut() {
        if last.0 == Tag::Equal {
            let (t, i1, i2, j1, j2) = *last;
            *last = (t, i1, i2.min(i1 + n), j1, j2.min(j1 + n));
        }
    }
    let mut groups = Vec::new();
    let mut group = Vec::new();
    for (t, mut i1, i2, mut j1, j2) in codes {
        if t == Tag::Equal && i2 - i1 > 2 * n {
            group.push((t, i1, i2.min(i1 + n), j1, j2.min(j1 + n)));
            groups.push(std::mem::take(&mut group));
            i1 = i1.max(i2.saturating_sub(n));
            j1 = j1.max(j2.saturating_sub(n));
        }
        group.push((t, i1, i2, j1, j2));
    }
    let only_context = matches!(group.as_slice(), [(Tag::Equal, ..)]);
    if !group.is_empty() && !only_context {
        groups.push(group);
    }
    groups
}

fn range(start: usize, stop: usize) -> String {
    let length = stop - start;
    match length {
        1 => format!("{}", start + 1),
        0 => format!("{start},0"),
        _ => format!("{},{}", start + 1, length),
    }
}

/// The unified diff of `before` and `after`, one line per element; empty when equal.
pub fn unified_diff(before: &str, after: &str) -> Vec<String> {
    let (a, b) = (lines(before), lines(after));
    let groups = grouped(opcodes(&a, &b), CONTEXT);
    let mut out = Vec::new();
    for group in groups {
        if out.is_empty() {
            out.push("--- ".to_string());
            out.push("+++ ".to_string());
        }
        let (first, last) = (group[0], group[group.len() - 1]);
        out.push(format!(
            "@@ -{} +{} @@",
            range(first.1, last.2),
            range(first.3, last.4)
        ));
        for (t, i1, i2, j1, j2) in group {
            if t == Tag::Equal {
                out.extend(a[i1..i2].iter().map(|l| format!(" {l}")));
                continue;
            }
            if matches!(t, Tag::Replace | Tag::Delete) {
                out.extend(a[i1..i2].iter().map(|l| format!("-{l}")));
            }
            if matches!(t, Tag::Replace | Tag::Insert) {
                out.extend(b[j1..j2].iter().map(|l| format!("+{l}")));
            }
        }
    }
    out
}

/// The diff as text, colored (red removals, green additions, cyan hunk headers)
/// when `color` is set, i.e. when stdout is a terminal.
pub fn render(before: &str, after: &str, color: bool) -> String {
    unified_diff(before, after)
        .into_iter()
        .map(|l| {
            if !color {
                return l;
            }
            let code = if l.starts_with("--- ") || l.starts_with("+++ ") {
                "1"
            } else if l.starts_with("@@") {
                "36"
            } else if l.starts_with('-') {
                "31"
            } else if l.starts_with('+') {
                "32"
            } else {
                return l;
            };
            format!("\x1b[{code}m{l}\x1b[0m")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
loop_wait: 10
maximum_lag_on_failover: 1048576
postgresql:
  parameters:
    max_connections: 100
    wal_keep_size: 128MB
  use_pg_rewind: true
  use_slots: true
retry_timeout: 10
ttl: 30
";

    #[test]
    fn one_change_in_the_middle() {
        let after = BEFORE.replace("max_connections: 100", "max_connections: 200");
        assert_eq!(
            render(BEFORE, &after, false),
            "\
--- 
+++ 
@@ -2,7 +2,7 @@
 maximum_lag_on_failover: 1048576
 postgresql:
   parameters:
-    max_connections: 100
+    max_connections: 200
     wal_keep_size: 128MB
   use_pg_rewind: true
   use_slots: true"
        );
    }

    #[test]
    fn insert_delete_and_two_hunks() {
        let after = BEFORE
            .replace("loop_wait: 10\n", "")
            .replace("ttl: 30\n", "ttl: 30\nwork: 1\n");
        assert_eq!(
            unified_diff(BEFORE, &after),
            vec![
                "--- ",
                "+++ ",
                "@@ -1,4 +1,3 @@",
                "-loop_wait: 10",
                " maximum_lag_on_failover: 1048576",
                " postgresql:",
                "   parameters:",
                "@@ -8,3 +7,4 @@",
                "   use_slots: true",
                " retry_timeout: 10",
                " ttl: 30",
                "+work: 1",
            ]
        );
    }

    #[test]
    fn equal_texts_have_no_diff() {
        assert!(unified_diff(BEFORE, BEFORE).is_empty());
        assert_eq!(render("", "", true), "");
    }

    #[test]
    fn from_and_to_empty() {
        assert_eq!(
            unified_diff("{}\n", "a: 1\nb: 2\n"),
            vec!["--- ", "+++ ", "@@ -1 +1,2 @@", "-{}", "+a: 1", "+b: 2"]
        );
        assert_eq!(
            unified_diff("a: 1\n", "a: 1\nb: 2\n"),
            vec!["--- ", "+++ ", "@@ -1 +1,2 @@", " a: 1", "+b: 2"]
        );
    }

    #[test]
    fn colors_only_when_asked() {
        let out = render("a: 1\n", "a: 2\n", true);
        assert!(out.contains("\x1b[31m-a: 1\x1b[0m"), "{out:?}");
        assert!(out.contains("\x1b[32m+a: 2\x1b[0m"), "{out:?}");
        assert!(out.contains("\x1b[36m@@ -1 +1 @@\x1b[0m"), "{out:?}");
        assert!(!render("a: 1\n", "a: 2\n", false).contains('\x1b'));
    }
}
