//! Online inference: registered models kept loaded between requests (a few, least recently
//! used dropped first), each with one thread that predicts for every request waiting when it
//! is free, so concurrent requests are answered in shared batches.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, Sender, TryRecvError, channel},
    },
};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::science::{
    Cancel,
    classify::{Card, Model},
    cnn,
};

/// Models kept loaded.
const CAPACITY: usize = 4;
/// Spectra predicted together at most (CPU batches past ~256 only cost cache).
const MAX_BATCH: usize = 256;

/// One spectrum's answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prediction {
    pub filename: String,
    /// The most probable class.
    pub label: String,
    /// One per class, in the order of the model's `classes`.
    pub probabilities: Vec<f64>,
    /// Of the probabilities, natural log.
    pub entropy: f64,
}

type Reply = tokio::sync::oneshot::Sender<Result<Vec<Prediction>, String>>;

struct Request {
    names: Vec<String>,
    rows: Vec<Vec<f64>>,
    reply: Reply,
}

/// A loaded model and the queue of its predicting thread.
pub struct Loaded {
    pub card: Card,
    tx: Mutex<Sender<Request>>,
}

impl Loaded {
    /// Predicts `rows` (preprocessed onto the model's grid), batched with other requests.
    pub async fn predict(
        &self,
        names: Vec<String>,
        rows: Vec<Vec<f64>>,
    ) -> Result<Vec<Prediction>, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .lock()
            .map_err(|_| "the model's thread is gone".to_string())?
            .send(Request { names, rows, reply })
            .map_err(|_| "the model's thread is gone".to_string())?;
        answer
            .await
            .map_err(|_| "the model's thread stopped".to_string())?
    }
}

#[derive(Default)]
pub struct Online {
    /// Most recently used last.
    loaded: Mutex<Vec<(Uuid, Arc<Loaded>)>>,
}

impl Online {
    pub fn new() -> Online {
        Online::default()
    }

    /// The model `id`, loaded from `dir` (its iteration's folder) unless it is already.
    pub async fn get(&self, id: Uuid, dir: &Path) -> Result<Arc<Loaded>, String> {
        if let Some(m) = self.touch(id) {
            return Ok(m);
        }
        let dir = dir.to_path_buf();
        let model = tokio::task::spawn_blocking(move || {
            let device = cnn::device("cpu").map_err(|e| e.to_string())?;
            Model::load(&dir, &device).map_err(|e| format!("{e:#}"))
        })
        .await
        .map_err(|e| format!("the loader failed: {e}"))??;
        let card = model.card.clone();
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name(format!("model-{id}"))
            .spawn(move || serve(model, rx))
            .map_err(|e| format!("cannot start the model's thread: {e}"))?;
        let loaded = Arc::new(Loaded {
            card,
            tx: Mutex::new(tx),
        });
        if let Ok(mut all) = self.loaded.lock() {
            // Another request may have loaded it meanwhile: keep one.
            all.retain(|(k, _)| *k != id);
            all.push((id, loaded.clone()));
            if all.len() > CAPACITY {
                all.remove(0);
            }
        }
        Ok(loaded)
    }

    fn touch(&self, id: Uuid) -> Option<Arc<Loaded>> {
        let mut all = self.loaded.lock().ok()?;
        let at = all.iter().position(|(k, _)| *k == id)?;
        let entry = all.remove(at);
        let m = entry.1.clone();
        all.push(entry);
        Some(m)
    }

    /// Drops a model that changed or is gone (its thread ends with its last request).
    pub fn forget(&self, id: Uuid) {
        if let Ok(mut all) = self.loaded.lock() {
            all.retain(|(k, _)| *k != id);
        }
    }
}

/// The model's thread: takes a request, and every other one already waiting up to
/// [`MAX_BATCH`] spectra, predicts them in one batch and answers each.
fn serve(model: Model, rx: Receiver<Request>) {
    let cancel = Cancel::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut spectra = batch[0].rows.len();
        while spectra < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => {
                    spectra += r.rows.len();
                    batch.push(r);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let rows: Vec<&[f64]> = batch
            .iter()
            .flat_map(|r| r.rows.iter().map(Vec::as_slice))
            .collect();
        let answer = model
            .predict(&rows, MAX_BATCH, &cancel)
            .map_err(|e| e.to_string());
        let mut at = 0;
        for r in batch {
            let n = r.rows.len();
            let part = answer.as_ref().map_err(Clone::clone).map(|p| {
                (at..at + n)
                    .zip(r.names)
                    .map(|(i, filename)| Prediction {
                        filename,
                        label: model.card.classes[p.labels[i]].clone(),
                        probabilities: p.probabilities[i].iter().map(|&v| v as f64).collect(),
                        entropy: p.entropies[i],
                    })
                    .collect()
            });
            at += n;
            let _ = r.reply.send(part);
        }
    }
}
