//! Run links (SPEC §8): the Weights & Biases and MLflow runs a job's log names
//! (`wandb: 🚀 View run at https://wandb.ai/…/runs/…`, MLflow's `View run … at:
//! http://…/#/experiments/1/runs/…`), listed on the job and linked from its page.

use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunLink {
    /// `wandb` or `mlflow`.
    pub kind: String,
    pub url: String,
}

/// The log is read at its start and its end, this much of each: the trackers print their
/// links when a run starts and again when it ends, and a long log is not read whole on
/// every look at the job.
const WINDOW: u64 = 256 << 10;

/// At most this many links on one job.
const MAX_LINKS: usize = 20;

/// The run links of the log at `path` (none when it cannot be read).
pub fn of_log(path: &std::path::Path) -> Vec<RunLink> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut text = Vec::new();
    let _ = (&mut f).take(WINDOW).read_to_end(&mut text);
    if len > 2 * WINDOW && f.seek(SeekFrom::Start(len - WINDOW)).is_ok() {
        text.push(b'\n');
        let _ = f.take(WINDOW).read_to_end(&mut text);
    } else if len > WINDOW {
        let _ = f.read_to_end(&mut text);
    }
    in_text(&String::from_utf8_lossy(&text))
}

/// The run links in `text`, each once, in the order they appear.
pub fn in_text(text: &str) -> Vec<RunLink> {
    let mut out: Vec<RunLink> = Vec::new();
    for line in text.lines() {
        let wandb_line = line.trim_start().starts_with("wandb:");
        let mut rest = line;
        while let Some(at) = rest.find("http") {
            let candidate = &rest[at..];
            let end = candidate
                .find(|c: char| c.is_whitespace() || "\"'<>`\u{1b}".contains(c))
                .unwrap_or(candidate.len());
            let url = candidate[..end].trim_end_matches(['.', ',', ';', ')', ']']);
            rest = &candidate[end.max(4)..];
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2000 {
                continue;
            }
            let kind = if url.contains("/experiments/") && url.contains("/runs/") {
                "mlflow"
            } else if url.contains("/runs/") && (wandb_line || host(url).contains("wandb")) {
                "wandb"
            } else {
                continue;
            };
            if out.len() < MAX_LINKS && !out.iter().any(|l| l.url == url) {
                out.push(RunLink {
                    kind: kind.into(),
                    url: url.into(),
                });
            }
        }
    }
    out
}

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_lines_give_their_run_links() {
        let log = "\
wandb: Tracking run with wandb version 0.17.0
wandb: 🚀 View run at https://wandb.ai/ondrejov/lamost/runs/3kx9q2ab
wandb: ⭐️ View project at https://wandb.ai/ondrejov/lamost
🏃 View run bright-owl-42 at: http://127.0.0.1:5000/#/experiments/1/runs/9f1c2e.
see https://example.org/runs/1 and https://wandb.ai/ondrejov/lamost/runs/3kx9q2ab again
wandb: 🚀 View run at https://wandb.example.edu/team/p/runs/abc";
        let links = in_text(log);
        let urls: Vec<(&str, &str)> = links
            .iter()
            .map(|l| (l.kind.as_str(), l.url.as_str()))
            .collect();
        assert_eq!(
            urls,
            [
                ("wandb", "https://wandb.ai/ondrejov/lamost/runs/3kx9q2ab"),
                (
                    "mlflow",
                    "http://127.0.0.1:5000/#/experiments/1/runs/9f1c2e"
                ),
                ("wandb", "https://wandb.example.edu/team/p/runs/abc"),
            ]
        );
        assert!(in_text("javascript:alert(1) http:// httpx").is_empty());
    }
}
