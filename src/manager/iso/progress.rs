//! Progress bars for long copies: drawn on stderr when it is a terminal,
//! nothing at all when output is piped or redirected.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

const TEMPLATE: &str = "{msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}";

pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar for `total` bytes, or nothing when stderr is not a terminal.
    pub fn bytes(total: u64, message: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_string());
        Progress(Some(bar))
    }

    pub fn set_message(&self, message: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(message.to_string());
        }
    }

    pub fn set(&self, position: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(position);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}
