//! `mljm jobs list|show|create|run|abort|log`: the REST API as one-liners. Tables for people,
//! `--json` for scripts; data on stdout, errors on stderr.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::jobs::model::{JobPage, JobView};

/// Which server a client subcommand talks to, and how it prints.
#[derive(Args, Debug)]
pub struct ServerOpts {
    /// Server to talk to.
    #[arg(
        long,
        env = "MLJM_SERVER",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    pub server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(flatten)]
    pub opts: ServerOpts,
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Jobs, newest first.
    List {
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[arg(long)]
        phase: Option<String>,
        #[arg(long = "type")]
        job_type: Option<String>,
        /// Only the tasks of this sweep (or the jobs made from this job).
        #[arg(long)]
        parent: Option<String>,
    },
    /// One job in full.
    Show { job_id: String },
    /// Create a job (and run it with --run).
    Create {
        #[arg(long = "type")]
        job_type: String,
        #[arg(long)]
        label: String,
        #[arg(long)]
        description: Option<String>,
        /// JSON config file, or - for standard input.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        run: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Queue a PENDING job.
    Run { job_id: String },
    /// Stop a queued or running job.
    Abort { job_id: String },
    /// Print the job log; --follow keeps printing until the job ends.
    Log {
        job_id: String,
        #[arg(long, short)]
        follow: bool,
    },
}

/// Where a job runs (SPEC §8): these set the config's `target` (over the config file's).
#[derive(Args, Debug, Default)]
pub struct TargetArgs {
    /// Run on this cluster of config.toml (SLURM).
    #[arg(long)]
    cluster: Option<String>,
    #[arg(long, requires = "cluster")]
    partition: Option<String>,
    /// GPUs per job: "2" or "a100:2".
    #[arg(long, requires = "cluster")]
    gpus: Option<String>,
    #[arg(long, requires = "cluster")]
    cpus: Option<u32>,
    /// Memory: "16G", "4000M".
    #[arg(long, requires = "cluster")]
    mem: Option<String>,
    /// Time limit: minutes, "HH:MM:SS" or "D-HH:MM".
    #[arg(long, requires = "cluster")]
    time: Option<String>,
    #[arg(long, requires = "cluster")]
    account: Option<String>,
    /// A sweep of SLURM array tasks, e.g. "0-99%10" (a SCRIPT reads SLURM_ARRAY_TASK_ID).
    #[arg(long, requires = "cluster")]
    array: Option<String>,
}

impl TargetArgs {
    /// The config with these flags written into its `target` (and `array`).
    fn apply(self, config: Option<Value>) -> anyhow::Result<Option<Value>> {
        let Some(cluster) = self.cluster else {
            return Ok(config);
        };
        let mut config = config.unwrap_or_else(|| json!({}));
        let Some(obj) = config.as_object_mut() else {
            anyhow::bail!("the config is not a JSON object");
        };
        let target = obj.entry("target").or_insert_with(|| json!({}));
        if !target.is_object() {
            *target = json!({});
        }
        target["cluster"] = json!(cluster);
        for (key, value) in [
            ("partition", self.partition.map(Value::from)),
            ("gpus", self.gpus.map(Value::from)),
            ("cpus", self.cpus.map(Value::from)),
            ("mem", self.mem.map(Value::from)),
            ("time", self.time.map(Value::from)),
            ("account", self.account.map(Value::from)),
        ] {
            if let Some(v) = value {
                target[key] = v;
            }
        }
        if let Some(a) = self.array {
            obj.insert("array".into(), json!(a));
        }
        Ok(Some(config))
    }
}

/// Why a request got no answer, in words that say what to do about it.
fn unreachable(base: &str, e: &reqwest::Error) -> String {
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        chain.push(s.to_string().to_lowercase());
        source = s.source();
    }
    let all = chain.join(": ");
    let why = if e.is_timeout() || all.contains("timed out") {
        "the connection timed out".to_string()
    } else if all.contains("connection refused") {
        "connection refused: no server listens there".to_string()
    } else if all.contains("dns")
        || all.contains("failed to lookup")
        || all.contains("name or service")
    {
        "its host name does not resolve".to_string()
    } else if e.is_builder() {
        format!("it is not a usable URL ({all})")
    } else {
        chain.last().cloned().unwrap_or_default()
    };
    format!(
        "nothing answers at {base} ({why}); start the server with `mljm serve`, or point \
         --server (or MLJM_SERVER) at the one you mean, e.g. --server http://gpu-host:8000"
    )
}

/// The server's API, with errors that say what to do.
pub(super) struct Client {
    pub http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client of `server`, with the token `MLJM_TOKEN` or `mljm login` gives (if any).
    pub fn new(server: &str) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = super::accounts::token_for(server)
            && let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        {
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        Client {
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap_or_default(),
            base: server.to_string(),
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(unreachable(&self.base, &e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let msg = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        anyhow::bail!("{status}: {msg}")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api{path}", self.base.trim_end_matches('/'))
    }

    async fn job(&self, req: reqwest::RequestBuilder) -> anyhow::Result<JobView> {
        Ok(self.send(req).await?.json().await?)
    }
}

pub async fn run(args: JobsArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.opts.server);
    let print_job = |job: &JobView| -> anyhow::Result<()> {
        if args.opts.json {
            println!("{}", serde_json::to_string_pretty(job)?);
        } else {
            print_details(job);
        }
        Ok(())
    };
    match args.command {
        JobsCommand::List {
            offset,
            limit,
            phase,
            job_type,
            parent,
        } => {
            let mut q = vec![("offset", offset.to_string()), ("limit", limit.to_string())];
            q.extend(phase.map(|p| ("phase", p)));
            q.extend(job_type.map(|t| ("type", t)));
            q.extend(parent.map(|p| ("parent", p)));
            let page: JobPage = c
                .send(c.http.get(c.url("/jobs/")).query(&q))
                .await?
                .json()
                .await?;
            if args.opts.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_table(&page);
            }
        }
        JobsCommand::Show { job_id } => {
            print_job(&c.job(c.http.get(c.url(&format!("/jobs/{job_id}")))).await?)?
        }
        JobsCommand::Create {
            job_type,
            label,
            description,
            config,
            run,
            target,
        } => {
            let config: Option<Value> = match config {
                None => None,
                Some(p) => {
                    let text = if p.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(&p)
                            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?
                    };
                    Some(
                        serde_json::from_str(&text)
                            .map_err(|e| anyhow::anyhow!("the config is not JSON: {e}"))?,
                    )
                }
            };
            let config = target.apply(config)?;
            let body = json!({ "type": job_type, "label": label, "description": description, "config": config });
            let mut job = c.job(c.http.post(c.url("/jobs/")).json(&body)).await?;
            if run {
                job = c
                    .job(
                        c.http
                            .post(c.url(&format!("/jobs/{}/process/RUN", job.job_id))),
                    )
                    .await?;
            }
            print_job(&job)?;
        }
        JobsCommand::Run { job_id } => print_job(
            &c.job(c.http.post(c.url(&format!("/jobs/{job_id}/process/RUN"))))
                .await?,
        )?,
        JobsCommand::Abort { job_id } => print_job(
            &c.job(c.http.post(c.url(&format!("/jobs/{job_id}/process/ABORT"))))
                .await?,
        )?,
        JobsCommand::Log { job_id, follow } => follow_log(&c, &job_id, follow).await?,
    }
    Ok(())
}

async fn follow_log(c: &Client, job_id: &str, follow: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut offset = 0u64;
    loop {
        let resp = c
            .send(
                c.http
                    .get(c.url(&format!("/jobs/{job_id}/log")))
                    .query(&[("offset", offset)]),
            )
            .await?;
        let bytes = resp.bytes().await?;
        offset += bytes.len() as u64;
        std::io::stdout().write_all(&bytes)?;
        std::io::stdout().flush()?;
        if !follow {
            return Ok(());
        }
        let job = c.job(c.http.get(c.url(&format!("/jobs/{job_id}")))).await?;
        if job.phase.is_terminal() && bytes.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_table(page: &JobPage) {
    println!(
        "{:<36}  {:<24}  {:<18}  {:<10}  {:<19}  {:>9}",
        "JOB_ID", "LABEL", "TYPE", "PHASE", "CREATED", "DURATION"
    );
    for j in &page.jobs {
        let label: String = j.label.chars().take(24).collect();
        let duration = j
            .execution_duration
            .map(|d| format!("{d:.1} s"))
            .unwrap_or_default();
        println!(
            "{:<36}  {:<24}  {:<18}  {:<10}  {:<19}  {:>9}",
            j.job_id,
            label,
            j.job_type,
            j.phase,
            j.created_at.format("%Y-%m-%d %H:%M:%S"),
            duration
        );
    }
    eprintln!(
        "{} of {} job(s), from offset {}",
        page.jobs.len(),
        page.total,
        page.offset
    );
}

fn print_details(j: &JobView) {
    let t = |d: Option<chrono::DateTime<chrono::Utc>>| {
        d.map(|d| d.to_rfc3339()).unwrap_or_else(|| "-".into())
    };
    println!("job_id:      {}", j.job_id);
    println!("type:        {}", j.job_type);
    println!("label:       {}", j.label);
    println!("description: {}", j.description.as_deref().unwrap_or("-"));
    println!("phase:       {}", j.phase);
    println!("dir_path:    {}", j.dir_path);
    println!("created_at:  {}", j.created_at.to_rfc3339());
    println!("started_at:  {}", t(j.started_at));
    println!("ended_at:    {}", t(j.ended_at));
    println!(
        "duration:    {}",
        j.execution_duration
            .map(|d| format!("{d:.3} s"))
            .unwrap_or_else(|| "-".into())
    );
    if let Some(c) = &j.cluster {
        println!("cluster:     {c}");
        println!(
            "slurm job:   {}",
            j.external_id.as_deref().unwrap_or("- (not submitted yet)")
        );
        println!("node:        {}", j.node.as_deref().unwrap_or("-"));
    }
    if let Some(code) = j.exit_code {
        println!("exit code:   {code}");
    }
    if let Some(e) = &j.error {
        println!("error:       {e}");
    }
}
