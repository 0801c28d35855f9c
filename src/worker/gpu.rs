//! The GPU slots of this host. With `gpu.devices = ["cuda:0", "cuda:1", …]` each device has
//! `gpu.jobs_per_device` slots (1 unless said otherwise), so two GPU jobs never share a
//! device; without it, `gpu.slots` slots all run on `gpu.device`. A job holds a [`Lease`]
//! while it runs, which names its device; dropping it (the job ended, failed, was aborted or
//! panicked) frees the slot.

use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::config::GpuConfig;

#[derive(Debug)]
struct Device {
    name: String,
    capacity: usize,
    /// Jobs holding a slot here; `None` for a slot reserved before its job was claimed.
    holders: Vec<Option<Uuid>>,
}

#[derive(Debug)]
pub struct GpuSlots {
    devices: Mutex<Vec<Device>>,
}

/// One slot on one device, held by one job (or reserved for the job about to be claimed).
#[derive(Debug)]
pub struct Lease {
    slots: Arc<GpuSlots>,
    index: usize,
    job: Option<Uuid>,
    pub device: String,
}

impl GpuSlots {
    pub fn new(config: &GpuConfig) -> Arc<GpuSlots> {
        let devices = if config.devices.is_empty() {
            vec![Device {
                name: config.device.clone(),
                capacity: config.slots,
                holders: Vec::new(),
            }]
        } else {
            config
                .devices
                .iter()
                .map(|d| Device {
                    name: d.clone(),
                    capacity: config.jobs_per_device,
                    holders: Vec::new(),
                })
                .collect()
        };
        Arc::new(GpuSlots {
            devices: Mutex::new(devices),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Device>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free slot on the least busy device (the first of equals), or `None`.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Lease> {
        let mut devices = self.lock();
        let (index, d) = devices
            .iter_mut()
            .enumerate()
            .filter(|(_, d)| d.holders.len() < d.capacity)
            .min_by_key(|(_, d)| d.holders.len())?;
        d.holders.push(None);
        Some(Lease {
            slots: self.clone(),
            index,
            job: None,
            device: d.name.clone(),
        })
    }

    /// Free slots on all devices.
    pub fn available(&self) -> usize {
        self.lock()
            .iter()
            .map(|d| d.capacity - d.holders.len())
            .sum()
    }

    /// The device job `id` holds a slot on, while it does.
    pub fn device_of(&self, id: Uuid) -> Option<String> {
        self.lock()
            .iter()
            .find(|d| d.holders.contains(&Some(id)))
            .map(|d| d.name.clone())
    }

    /// (device, jobs holding it), in configuration order.
    pub fn holders(&self) -> Vec<(String, Vec<Uuid>)> {
        self.lock()
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    d.holders.iter().flatten().copied().collect(),
                )
            })
            .collect()
    }
}

impl Lease {
    /// Records which job holds the slot.
    pub fn bind(&mut self, job: Uuid) {
        let mut devices = self.slots.lock();
        if let Some(h) = devices[self.index]
            .holders
            .iter_mut()
            .find(|h| **h == self.job)
        {
            *h = Some(job);
        }
        self.job = Some(job);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut devices = self.slots.lock();
        let holders = &mut devices[self.index].holders;
        if let Some(i) = holders.iter().position(|h| *h == self.job) {
            holders.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(devices: &[&str], per_device: usize) -> GpuConfig {
        GpuConfig {
            devices: devices.iter().map(|d| d.to_string()).collect(),
            jobs_per_device: per_device,
            ..GpuConfig::default()
        }
    }

    #[test]
    fn each_job_gets_its_own_device_until_all_are_taken() {
        let slots = GpuSlots::new(&config(&["cuda:0", "cuda:1"], 1));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut first = slots.try_acquire().unwrap();
        first.bind(a);
        let mut second = slots.try_acquire().unwrap();
        second.bind(b);
        assert_eq!(
            (first.device.as_str(), second.device.as_str()),
            ("cuda:0", "cuda:1")
        );
        assert!(slots.try_acquire().is_none(), "two devices, two jobs");
        assert_eq!(slots.device_of(b).as_deref(), Some("cuda:1"));
        assert_eq!(
            slots.holders(),
            vec![("cuda:0".into(), vec![a]), ("cuda:1".into(), vec![b])]
        );
        drop(first);
        assert_eq!(slots.device_of(a), None);
        assert_eq!(
            slots.try_acquire().unwrap().device,
            "cuda:0",
            "the freed device"
        );
    }

    #[test]
    fn jobs_per_device_lets_jobs_share_and_reservations_are_returned() {
        let slots = GpuSlots::new(&config(&["cuda:0", "cuda:1"], 2));
        let leases: Vec<Lease> = (0..4).map(|_| slots.try_acquire().unwrap()).collect();
        let on = |d: &str| leases.iter().filter(|l| l.device == d).count();
        assert_eq!(
            (on("cuda:0"), on("cuda:1")),
            (2, 2),
            "spread over the devices"
        );
        assert!(slots.try_acquire().is_none());
        drop(leases);
        assert_eq!(
            slots.available(),
            4,
            "unbound reservations are returned too"
        );
    }

    #[test]
    fn without_devices_the_slots_share_gpu_device() {
        let c = GpuConfig {
            slots: 3,
            device: "cpu".into(),
            ..GpuConfig::default()
        };
        let slots = GpuSlots::new(&c);
        let l: Vec<Lease> = (0..3).map(|_| slots.try_acquire().unwrap()).collect();
        assert!(l.iter().all(|l| l.device == "cpu"));
        assert!(slots.try_acquire().is_none());
    }
}
