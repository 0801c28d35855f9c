//! Run links (SPEC §8): the Weights & Biases and MLflow runs a job's log names
//! (`wandb: 🚀 View run at https://wandb.ai/…/runs/…`, MLflow's `View run … at:
//! http://…/#/experiments/1/runs/…`), listed on the job and linked from its page.

use std::{
    collections::HashMap,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{LazyLock, Mutex},
};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunLink {
    /// `wandb` or `mlflow`.
    pub kind: String,
    pub url: String,
}

/// A long log is read at its start and its end, this much of each, the first time: the
/// trackers print their links when a run starts and again when it ends.
const WINDOW: u64 = 256 << 10;

/// At most this many links on one job.
const MAX_LINKS: usize = 20;

/// Each log's links and how far it has been read (to the end of its last whole line). The
/// job page asks every second while a job runs: only what the log gained since is read.
static SEEN: LazyLock<Mutex<HashMap<PathBuf, Seen>>> = LazyLock::new(Default::default);

/// How far a log has been read, and the links in that part.
type Seen = (u64, Vec<RunLink>);

/// Logs remembered at most (the oldest are simply read again).
const MAX_SEEN: usize = 4096;

/// The run links of the log at `path` (none when it cannot be read).
pub fn of_log(path: &Path) -> Vec<RunLink> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let known = SEEN
        .lock()
        .ok()
        .and_then(|m| m.get(path).cloned())
        .filter(|(to, _)| *to <= len);
    let (from, mut links) = known.unwrap_or_default();
    if from == len {
        return links;
    }
    let mut text = Vec::new();
    if from == 0 && len > 2 * WINDOW {
        let _ = (&mut f).take(WINDOW).read_to_end(&mut text);
        text.push(b'\n');
    }
    // The new part (at most its last WINDOW); a line still being written waits for next time.
    let start = from.max(len.saturating_sub(WINDOW));
    let before = text.len();
    if f.seek(SeekFrom::Start(start)).is_ok() {
        let _ = f.take(len - start).read_to_end(&mut text);
    }
    let whole = text[before..]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    text.truncate(before + whole);
    for link in in_text(&String::from_utf8_lossy(&text)) {
        if links.len() < MAX_LINKS && !links.contains(&link) {
            links.push(link);
        }
    }
    if let Ok(mut m) = SEEN.lock() {
        if m.len() >= MAX_SEEN {
            m.clear();
        }
        m.insert(path.to_path_buf(), (start + whole as u64, links.clone()));
    }
    links
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

    /// A growing log is read from where it was: a link added later is found, one on a line
    /// still being written is not taken half.
    #[test]
    fn a_growing_log_is_read_from_where_it_was() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        let mut log = std::fs::File::create(&path).unwrap();
        writeln!(log, "wandb: View run at https://wandb.ai/a/b/runs/one").unwrap();
        write!(log, "wandb: View run at https://wandb.ai/a/b/ru").unwrap();
        let first = of_log(&path);
        assert_eq!(first.len(), 1);
        writeln!(log, "ns/two").unwrap();
        let urls: Vec<String> = of_log(&path).into_iter().map(|l| l.url).collect();
        assert_eq!(
            urls,
            [
                "https://wandb.ai/a/b/runs/one",
                "https://wandb.ai/a/b/runs/two"
            ]
        );
    }
}
