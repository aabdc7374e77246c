//! Questions and confirmations, worded and formatted as patronictl's (click's):
//! `Primary [node1]: `, `Are you sure ...? [y/N]: `.
//!
//! Rule: never hang. When stdin is not a terminal, a question that would have to
//! be asked is refused with exit code 2, naming the option that avoids it.

use std::io::{BufRead, Write};

use super::{CtlError, CtlResult};

/// Where answers come from.
pub trait Prompter {
    /// Ask for a value; an empty answer takes `default`. `avoid` names the option
    /// that makes the question unnecessary (for the refusal message).
    fn ask(&mut self, question: &str, default: Option<&str>, avoid: &str) -> CtlResult<String>;

    /// Ask a yes/no question; the default is no.
    fn confirm(&mut self, question: &str, avoid: &str) -> CtlResult<bool>;
}

/// The refusal when a question cannot be asked.
pub fn refusal(avoid: &str) -> CtlError {
    CtlError::usage(format!(
        "refusing to prompt: stdin is not a terminal; pass {avoid}"
    ))
}

/// How a question is shown: `text [default]: `.
pub fn question_line(question: &str, default: Option<&str>) -> String {
    match default {
        Some(d) => format!("{question} [{d}]: "),
        None => format!("{question}: "),
    }
}

/// `Some(answer)` for y/yes/n/no (any case), `Some(false)` for an empty answer,
/// `None` for anything else (asked again).
pub fn parse_yes_no(answer: &str) -> Option<bool> {
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(true),
        "n" | "no" | "" => Some(false),
        _ => None,
    }
}

/// Prompts on the terminal (stdout), answers from stdin.
pub struct Terminal {
    /// Whether stdin is a terminal; when not, every question is refused.
    pub interactive: bool,
}

impl Terminal {
    pub fn detect() -> Terminal {
        use std::io::IsTerminal;
        Terminal {
            interactive: std::io::stdin().is_terminal(),
        }
    }

    fn read_line(&self, shown: &str) -> CtlResult<String> {
        print!("{shown}");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) => Err(CtlError::failed("aborted (end of input)")),
            Ok(_) => Ok(line.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => Err(CtlError::failed(format!("cannot read the answer: {e}"))),
        }
    }
}

impl Prompter for Terminal {
    fn ask(&mut self, question: &str, default: Option<&str>, avoid: &str) -> CtlResult<String> {
        if !self.interactive {
            return Err(refusal(avoid));
        }
        loop {
            let answer = self.read_line(&question_line(question, default))?;
            if !answer.is_empty() {
                return Ok(answer);
            }
            if let Some(d) = default {
                return Ok(d.to_string());
            }
        }
    }

    fn confirm(&mut self, question: &str, avoid: &str) -> CtlResult<bool> {
        if !self.interactive {
            return Err(refusal(avoid));
        }
        loop {
            let answer = self.read_line(&format!("{question} [y/N]: "))?;
            match parse_yes_no(&answer) {
                Some(b) => return Ok(b),
                None => println!("Error: invalid input"),
            }
        }
    }
}

/// Answers given in advance (tests). Runs out -> the question is refused like a non-terminal.
#[cfg(test)]
pub struct Scripted {
    pub answers: std::collections::VecDeque<String>,
    pub asked: Vec<String>,
}

#[cfg(test)]
impl Scripted {
    pub fn new(answers: &[&str]) -> Scripted {
        Scripted {
            answers: answers.iter().map(|s| s.to_string()).collect(),
            asked: Vec::new(),
        }
    }
}

#[cfg(test)]
impl Prompter for Scripted {
    fn ask(&mut self, question: &str, default: Option<&str>, avoid: &str) -> CtlResult<String> {
        self.asked.push(question_line(question, default));
        let a = self.answers.pop_front().ok_or_else(|| refusal(avoid))?;
        Ok(if a.is_empty() {
            default.unwrap_or("").to_string()
        } else {
            a
        })
    }

    fn confirm(&mut self, question: &str, avoid: &str) -> CtlResult<bool> {
        self.asked.push(format!("{question} [y/N]: "));
        let a = self.answers.pop_front().ok_or_else(|| refusal(avoid))?;
        Ok(parse_yes_no(&a).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_terminal_is_never_asked() {
        let mut t = Terminal { interactive: false };
        let e = t
            .ask("Candidate", Some(""), "--candidate or --force")
            .unwrap_err();
        assert_eq!(e.code, 2);
        assert_eq!(
            e.message,
            "refusing to prompt: stdin is not a terminal; pass --candidate or --force"
        );
        let e = t.confirm("Are you sure?", "--force").unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.ends_with("pass --force"));
    }

    #[test]
    fn formats() {
        assert_eq!(question_line("Primary", Some("node1")), "Primary [node1]: ");
        assert_eq!(
            question_line("Candidate ['a', 'b']", Some("")),
            "Candidate ['a', 'b'] []: "
        );
        assert_eq!(question_line("Please confirm", None), "Please confirm: ");
        assert_eq!(parse_yes_no("Y"), Some(true));
        assert_eq!(parse_yes_no("yes\n"), Some(true));
        assert_eq!(parse_yes_no(""), Some(false));
        assert_eq!(parse_yes_no("No"), Some(false));
        assert_eq!(parse_yes_no("maybe"), None);
    }
}
