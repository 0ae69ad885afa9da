//! The demo's output: plain lines that scroll (steps, events) and, on a
//! terminal, a live block redrawn in place under them.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::Instant;

use super::PLAIN_EVERY;

// ---------------------------------------------------------------------------
// Output: plain lines that scroll (steps, events) and, on a terminal, a live
// block redrawn in place under them. Without a terminal (a pipe, a CI log) the
// block is printed whenever its content changes, so the log reads top to bottom.

pub struct Ui {
    pub tty: bool,
    pub color: bool,
    pub start: Instant,
    /// Lines of the live block currently on screen (terminal only).
    pub drawn: usize,
    /// Terminal width.
    pub width: usize,
    pub block: Vec<String>,
    /// Without a terminal: what the last printed block showed, and when.
    pub last_key: String,
    pub last_print: Instant,
}

impl Ui {
    pub fn new() -> Ui {
        let tty = std::io::stdout().is_terminal();
        Ui {
            tty,
            color: tty && std::env::var_os("NO_COLOR").is_none(),
            start: Instant::now(),
            drawn: 0,
            width: terminal_width(),
            block: vec![],
            last_key: String::new(),
            last_print: Instant::now(),
        }
    }

    pub fn clock(&self) -> String {
        let s = self.start.elapsed().as_secs();
        format!("{:02}:{:02}", s / 60, s % 60)
    }

    pub fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }

    pub fn erase(&mut self, out: &mut String) {
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}F\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    pub fn redraw(&mut self, out: &mut String) {
        // A line wider than the terminal would wrap and break the redraw.
        for l in &self.block {
            out.push_str(&fit(l, self.width));
            out.push('\n');
        }
        self.drawn = self.block.len();
    }

    /// A line that stays (a step, an event).
    pub fn line(&mut self, text: &str) {
        let mut out = String::new();
        if self.tty {
            self.erase(&mut out);
            out.push_str(text);
            out.push('\n');
            self.redraw(&mut out);
        } else {
            out.push_str(text);
            out.push('\n');
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
    }

    /// A timestamped line that stays.
    pub fn note(&mut self, text: &str) {
        let t = self.dim(&self.clock());
        self.line(&format!("{t}  {text}"));
    }

    /// Replace the live block; `lines[0]` gets the clock prepended. On a
    /// terminal it is redrawn in place; otherwise it is printed when `key`
    /// (what matters in it, without counters that move every second)
    /// changes, or every `PLAIN_EVERY`.
    pub fn live(&mut self, mut lines: Vec<String>, key: String) {
        for (i, l) in lines.iter_mut().enumerate() {
            *l = if i == 0 {
                format!("{}  {l}", self.dim(&self.clock()))
            } else {
                format!("       {l}")
            };
        }
        if self.tty {
            self.block = lines;
            let mut out = String::new();
            self.erase(&mut out);
            self.redraw(&mut out);
            print!("{out}");
        } else {
            if key == self.last_key && self.last_print.elapsed() < PLAIN_EVERY {
                return;
            }
            self.last_key = key;
            self.last_print = Instant::now();
            print!("{}", lines.join("\n") + "\n");
        }
        let _ = std::io::stdout().flush();
    }

    /// Leave the live block on screen as ordinary output.
    pub fn freeze(&mut self) {
        self.drawn = 0;
        self.block.clear();
    }
}

/// Columns of the terminal on stdin (`stty size`), else `$COLUMNS`, else 80.
pub fn terminal_width() -> usize {
    std::process::Command::new("stty")
        .arg("size")
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
        })
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
        .filter(|w| *w > 20)
        .unwrap_or(80)
}

/// Cut `s` to `width - 1` visible characters, keeping ANSI colour codes.
pub fn fit(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut visible = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            for c in chars.by_ref() {
                out.push(c);
                if c == 'm' {
                    break;
                }
            }
            continue;
        }
        if visible + 1 >= width {
            out.push_str("\x1b[0m");
            break;
        }
        out.push(c);
        visible += 1;
    }
    out
}
