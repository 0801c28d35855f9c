//! The batch script of a cluster job (rendered from `templates/cluster/job.sbatch`, kept in
//! the job directory as `job.sbatch`), and reading `sinfo`.

use std::collections::BTreeMap;

use askama::Template;
use serde_json::Value;

use super::{
    Gpus, Info, Partition,
    remote::sh_quote,
    target::{Target, or_default},
};
use crate::{config::ClusterConfig, job_types::script::ScriptConfig};

#[derive(Template)]
#[template(path = "cluster/job.sbatch", escape = "none")]
struct Batch<'a> {
    job_id: String,
    job_type: &'a str,
    cluster: &'a str,
    version: &'static str,
    name: String,
    output: String,
    workdir: String,
    directives: Vec<String>,
    setup: Vec<String>,
    command: String,
    /// `--array=…` of a sweep (empty otherwise).
    array: String,
    /// A sweep's tasks: each runs in its own job directory.
    tasks: Vec<TaskLines>,
}

struct TaskLines {
    index: u32,
    job_id: String,
    dir: String,
    lines: Vec<String>,
}

/// What a job is, as the batch script needs it.
pub struct Job<'a> {
    pub id: uuid::Uuid,
    pub job_type: &'a str,
    pub config: &'a Value,
    /// The job directory as the cluster sees it.
    pub dir: String,
    /// The data directory as the cluster sees it (for `mljm run --data-dir`).
    pub data_dir: String,
    /// The mljm binary on the cluster.
    pub mljm: String,
    /// A built-in type's own output goes to SLURM's file (where `log.txt` is not shared and
    /// the log is followed from there) rather than nowhere.
    pub own_output: bool,
}

/// The name of the SLURM output file in the job directory.
pub const OUTPUT: &str = "slurm.out";

pub fn render(job: &Job, target: &Target, cluster: &ClusterConfig) -> Result<String, String> {
    let script = script_of(job)?;
    let timeout_s = script.as_ref().and_then(|s| s.timeout_s);
    let (exports, command) = command(job, script, target);
    let mut batch = batch(job, timeout_s, target, cluster);
    batch.setup.extend(exports);
    batch.command = command;
    batch.render().map_err(|e| format!("job.sbatch: {e}"))
}

/// A sweep's one script: `--array=spec`, and a `case` on `SLURM_ARRAY_TASK_ID` that runs each
/// task in its own job directory with its output in that directory's `slurm.out`.
pub fn render_sweep(
    sweep: &Job,
    tasks: &[(u32, Job)],
    spec: &str,
    target: &Target,
    cluster: &ClusterConfig,
) -> Result<String, String> {
    // Each task's own config is what runs (the sweep's may leave `command` to its sets); the
    // array's time limit is the longest a task asks for.
    let scripts = tasks
        .iter()
        .map(|(_, t)| script_of(t))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout_s = scripts
        .iter()
        .filter_map(|s| s.as_ref()?.timeout_s)
        .reduce(f64::max);
    let mut batch = batch(sweep, timeout_s, target, cluster);
    batch.array = spec.to_string();
    batch.output = format!("{}/slurm-%a.out", sweep.dir);
    for ((index, task), script) in tasks.iter().zip(scripts) {
        let (mut lines, command) = command(task, script, target);
        lines.push(command);
        batch.tasks.push(TaskLines {
            index: *index,
            job_id: task.id.to_string(),
            dir: sh_quote(&task.dir),
            lines,
        });
    }
    batch.render().map_err(|e| format!("job.sbatch: {e}"))
}

/// The script around the command: `#SBATCH` lines from the target and the cluster's
/// defaults, and the cluster's setup lines.
fn batch<'a>(
    job: &'a Job,
    timeout_s: Option<f64>,
    target: &Target,
    cluster: &'a ClusterConfig,
) -> Batch<'a> {
    let mut directives = Vec::new();
    if let Some(p) = or_default(&target.partition, &cluster.partition) {
        directives.push(format!("--partition={p}"));
    }
    if let Some(a) = or_default(&target.account, &cluster.account) {
        directives.push(format!("--account={a}"));
    }
    // A SCRIPT's timeout_s is its time limit where the target sets none.
    let timeout = timeout_s.map(|t| format!("{}", (t / 60.0).ceil().max(1.0) as u64));
    if let Some(t) = target
        .time
        .clone()
        .or(timeout)
        .or((!cluster.time.is_empty()).then(|| cluster.time.clone()))
    {
        directives.push(format!("--time={t}"));
    }
    if let Some(g) = &target.gpus {
        directives.push(format!("--gres=gpu:{g}"));
    }
    if let Some(c) = target.cpus {
        directives.push(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = &target.mem {
        directives.push(format!("--mem={m}"));
    }
    if let Some(n) = target.nodes {
        directives.push(format!("--nodes={n}"));
    }
    directives.extend(cluster.sbatch_lines.iter().cloned());
    let mut setup = cluster.setup_lines.clone();
    if let Some(env) = &target.conda_env {
        setup.push("eval \"$(conda shell.bash hook)\"".into());
        setup.push(format!("conda activate {}", sh_quote(env)));
    }
    let id = job.id.to_string();
    Batch {
        name: format!("mljm-{}", &id[..8]),
        job_id: id,
        job_type: job.job_type,
        cluster: &cluster.name,
        version: env!("CARGO_PKG_VERSION"),
        output: format!("{}/{OUTPUT}", job.dir),
        workdir: job.dir.clone(),
        directives,
        setup,
        command: String::new(),
        array: String::new(),
        tasks: Vec::new(),
    }
}

/// A SCRIPT's config (none for the built-in types).
fn script_of(job: &Job) -> Result<Option<ScriptConfig>, String> {
    (job.job_type == "SCRIPT")
        .then(|| ScriptConfig::parse(job.config).map_err(|e| e.to_string()))
        .transpose()
}

/// The job's command line, and the `export` lines of its environment.
fn command(job: &Job, script: Option<ScriptConfig>, target: &Target) -> (Vec<String>, String) {
    let (words, env): (Vec<String>, BTreeMap<String, String>) = match script {
        Some(s) => (s.command, s.env),
        // The built-in types run as `mljm run` does here; its log.txt is the job's log.
        None => (
            vec![
                job.mljm.clone(),
                "run".into(),
                job.job_type.into(),
                "--config".into(),
                format!("{}/config.json", job.dir),
                "--out".into(),
                job.dir.clone(),
                "--data-dir".into(),
                job.data_dir.clone(),
            ],
            BTreeMap::new(),
        ),
    };
    let exports = env
        .iter()
        .map(|(k, v)| format!("export {}={}", sh_quote(k), sh_quote(v)))
        .collect();
    let mut line: Vec<String> = Vec::new();
    if let Some(c) = &target.container {
        line.push(c.runtime.command().into());
        line.push("exec".into());
        if target.gpus.is_some() {
            line.push("--nv".into());
        }
        line.push(sh_quote(&c.image));
    }
    line.extend(words.iter().map(|w| sh_quote(w)));
    let mut command = format!("exec {}", line.join(" "));
    if job.job_type != "SCRIPT" && !job.own_output {
        // Its own lines go to log.txt; SLURM's file keeps what the script itself says.
        command.push_str(" >/dev/null 2>&1");
    }
    (exports, command)
}

/// One `sinfo -h -a -N -O Partition:|,Available:|,CPUsState:|,Gres:|,GresUsed:|,NodeHost:|`
/// answer (a row per node and partition) summed by partition.
pub fn parse_sinfo(out: &str) -> Result<Info, String> {
    let mut parts: Vec<Partition> = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        if f.len() < 6 {
            return Err(format!("sinfo answered a line mljm cannot read: {line:?}"));
        }
        let default = f[0].ends_with('*');
        let name = f[0].trim_end_matches('*').to_string();
        let cpus: Vec<u32> = f[2].split('/').filter_map(|n| n.parse().ok()).collect();
        let p = match parts.iter_mut().position(|p| p.name == name) {
            Some(i) => &mut parts[i],
            None => {
                parts.push(Partition {
                    name,
                    state: f[1].to_string(),
                    default,
                    nodes: 0,
                    cpus: 0,
                    cpus_allocated: 0,
                    cpus_idle: 0,
                    gpus: Vec::new(),
                });
                parts.last_mut().expect("just pushed")
            }
        };
        p.nodes += 1;
        if let [alloc, idle, _other, total] = cpus[..] {
            p.cpus += total;
            p.cpus_allocated += alloc;
            p.cpus_idle += idle;
        }
        for (kind, n) in gres(f[3]) {
            add(&mut p.gpus, &kind, n, 0);
        }
        for (kind, n) in gres(f[4]) {
            add(&mut p.gpus, &kind, 0, n);
        }
    }
    for g in parts.iter_mut().flat_map(|p| &mut p.gpus) {
        g.free = g.total.saturating_sub(g.allocated);
    }
    Ok(Info {
        name: String::new(),
        partitions: parts,
    })
}

fn add(gpus: &mut Vec<Gpus>, kind: &str, total: u32, allocated: u32) {
    match gpus.iter_mut().find(|g| g.kind == kind) {
        Some(g) => {
            g.total += total;
            g.allocated += allocated;
        }
        None => gpus.push(Gpus {
            kind: kind.to_string(),
            total,
            allocated,
            free: 0,
        }),
    }
}

/// The GPUs of a GRES field: `gpu:a100:4,gpu:v100:2(S:0-1)` or `gpu:testgpu:1(IDX:0)` →
/// (type, count); other GRES (`mps`, …) are left out.
fn gres(field: &str) -> Vec<(String, u32)> {
    field
        .split(',')
        .filter_map(|g| {
            let g = g.split('(').next().unwrap_or_default();
            let mut parts = g.split(':');
            if parts.next()? != "gpu" {
                return None;
            }
            let rest: Vec<&str> = parts.collect();
            match rest[..] {
                [n] => Some((String::new(), n.parse().ok()?)),
                [kind, n] => Some((kind.to_string(), n.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinfo_rows_sum_by_partition_with_gpus_by_type() {
        let out = "debug*|up|2/6/0/8|gpu:testgpu:2|gpu:testgpu:1(IDX:0)|n1\n\
                   debug*|up|0/8/0/8|gpu:testgpu:2,mps:100|gpu:testgpu:0(IDX:N/A)|n2\n\
                   long|down|0/4/0/4|(null)|(null)|n3\n";
        let info = parse_sinfo(out).unwrap();
        assert_eq!(info.partitions.len(), 2);
        let d = &info.partitions[0];
        assert_eq!(
            (
                d.name.as_str(),
                d.default,
                d.nodes,
                d.cpus,
                d.cpus_allocated
            ),
            ("debug", true, 2, 16, 2)
        );
        assert_eq!(
            d.gpus,
            vec![Gpus {
                kind: "testgpu".into(),
                total: 4,
                allocated: 1,
                free: 3
            }]
        );
        assert_eq!(info.partitions[1].state, "down");
        assert!(info.partitions[1].gpus.is_empty());
        assert!(parse_sinfo("garbage").is_err());
    }
}
