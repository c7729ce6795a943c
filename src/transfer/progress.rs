//! What a pull shows: on a terminal, one bar per layer and a total bar (bytes only
//! ever go forward: a resumed blob continues where it stopped); elsewhere (CI logs)
//! one plain line per event.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The display of one pull (clones draw on the same display).
#[derive(Clone)]
pub struct Progress {
    quiet: bool,
    bars: Option<(MultiProgress, ProgressBar)>,
}

/// One layer's line.
#[derive(Clone)]
pub struct LayerLine {
    short: String,
    bar: Option<ProgressBar>,
    total: Option<ProgressBar>,
    quiet: bool,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

/// How a command shows its progress (`-q`, `build --progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Nothing.
    Quiet,
    /// A line per event, never bars (`--progress plain`).
    Lines,
    /// Bars on a terminal, lines elsewhere (the default).
    Auto,
}

impl Shown {
    /// `-q` or the default.
    pub fn quiet_or_auto(quiet: bool) -> Shown {
        if quiet {
            Shown::Quiet
        } else {
            Shown::Auto
        }
    }
}

impl Progress {
    /// Bars when stderr is a terminal and `shown` allows them; plain lines otherwise.
    pub fn new(shown: Shown) -> Progress {
        let quiet = shown == Shown::Quiet;
        let bars = (shown == Shown::Auto && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let total = multi.add(ProgressBar::new(0));
            total.set_style(style("total        [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}"));
            (multi, total)
        });
        Progress { quiet, bars }
    }

    /// Plain lines only, no bars (a push, which has no byte counts to show).
    pub fn lines(quiet: bool) -> Progress {
        Progress { quiet, bars: None }
    }

    /// Network code's notices (retries, resumed blobs), shown as message lines.
    pub fn notices(&self) -> crate::registry::resume::Notices {
        let p = self.clone();
        std::sync::Arc::new(move |m: &str| p.say(m))
    }

    /// A message line (above the bars on a terminal).
    pub fn say(&self, msg: impl AsRef<str>) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(msg.as_ref());
            }
            None if !self.quiet => eprintln!("{}", msg.as_ref()),
            None => {}
        }
    }

    /// A layer that will be fetched: `size` bytes.
    pub fn layer(&self, short: &str, size: u64) -> LayerLine {
        let (bar, total) = match &self.bars {
            Some((multi, total)) => {
                total.inc_length(size);
                let bar = multi.insert_before(total, ProgressBar::new(size));
                bar.set_style(style("{prefix} {msg:<11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}"));
                bar.set_prefix(short.to_string());
                bar.set_message("waiting");
                bar.enable_steady_tick(Duration::from_millis(200));
                (Some(bar), Some(total.clone()))
            }
            None => {
                if !self.quiet {
                    eprintln!("{short}: waiting");
                }
                (None, None)
            }
        };
        LayerLine { short: short.to_string(), bar, total, quiet: self.quiet }
    }

    /// Clears the bars.
    pub fn finish(&self) {
        if let Some((_, total)) = &self.bars {
            total.finish_and_clear();
        }
    }
}

impl LayerLine {
    /// Bytes arrived.
    pub fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            if b.position() == 0 {
                b.set_message("downloading");
            }
            b.inc(n);
        }
        if let Some(t) = &self.total {
            t.inc(n);
        }
    }

    /// The layer is stored.
    pub fn done(&self, what: &str) {
        match &self.bar {
            Some(b) => {
                b.set_style(style("{prefix} {msg}"));
                b.finish_with_message(what.to_string());
            }
            None if !self.quiet => eprintln!("{}: {what}", self.short),
            None => {}
        }
    }
}
