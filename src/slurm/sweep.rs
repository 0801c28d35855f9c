//! Sweeps (SPEC §8): one job config with `"array": [ {…overrides…}, … ]`, or `"array":
//! "0-99%10"` for a SCRIPT that reads `SLURM_ARRAY_TASK_ID`, and `"array_parallelism": N`.
//! The sweep is one `sbatch --array=…%N`; each task is a child job (its own phase, log and
//! exit code) whose config is the sweep's with the task's overrides and `array_task`.

use serde_json::{Map, Value};

use crate::job_types::ConfigError;

/// Keys of a sweep's config that its tasks do not inherit.
const SWEEP_KEYS: [&str; 2] = ["array", "array_parallelism"];

/// The key a task's config carries its index in.
pub const TASK_KEY: &str = "array_task";

/// At most this many tasks in one sweep (SLURM's own limit, `MaxArraySize`, is usually 1,001
/// and sbatch names it when an index is past it).
pub const MAX_TASKS: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub tasks: Vec<Task>,
    /// At most this many tasks run at once (`%N`).
    pub parallelism: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// `SLURM_ARRAY_TASK_ID`.
    pub index: u32,
    /// The task's own config: the sweep's, its overrides, and `array_task`.
    pub config: Value,
}

impl Sweep {
    /// `sbatch --array`'s value: the indexes as ranges, and `%N`.
    pub fn array_spec(&self) -> String {
        let indexes: Vec<u32> = self.tasks.iter().map(|t| t.index).collect();
        let mut spec = ranges(&indexes);
        if let Some(n) = self.parallelism {
            spec.push_str(&format!("%{n}"));
        }
        spec
    }
}

/// Whether a config is a sweep's (it has an `array`).
pub fn is_sweep(config: Option<&Value>) -> bool {
    config
        .and_then(|c| c.get("array"))
        .is_some_and(|a| !a.is_null())
}

/// The task index of a task's config.
pub fn task_index(config: Option<&Value>) -> Option<u32> {
    config?.get(TASK_KEY)?.as_u64()?.try_into().ok()
}

/// The sweep a config describes, if it is one; a malformed one names its field.
pub fn of_config(config: &Value) -> Result<Option<Sweep>, ConfigError> {
    let Some(array) = config.get("array").filter(|a| !a.is_null()) else {
        if config
            .get("array_parallelism")
            .is_some_and(|p| !p.is_null())
        {
            return Err(ConfigError::new(
                "array_parallelism",
                "only a sweep (a config with \"array\") has a parallelism",
            ));
        }
        return Ok(None);
    };
    if config.get("target").is_none_or(Value::is_null) {
        return Err(ConfigError::new(
            "array",
            "a sweep runs as a SLURM array: give the config a \"target\" naming a cluster",
        ));
    }
    if config.get(TASK_KEY).is_some() {
        return Err(ConfigError::new(
            TASK_KEY,
            "a sweep is not one of its tasks",
        ));
    }
    let mut base: Map<String, Value> = config.as_object().cloned().unwrap_or_default();
    for k in SWEEP_KEYS {
        base.remove(k);
    }
    let task = |index: u32, overrides: &Map<String, Value>| {
        let mut c = base.clone();
        c.extend(overrides.clone());
        c.insert(TASK_KEY.into(), index.into());
        Task {
            index,
            config: Value::Object(c),
        }
    };
    let (tasks, cap) = match array {
        Value::Array(sets) => {
            if sets.is_empty() || sets.len() > MAX_TASKS {
                return Err(ConfigError::new(
                    "array",
                    format!(
                        "a sweep has 1 to {MAX_TASKS} parameter sets (got {})",
                        sets.len()
                    ),
                ));
            }
            let mut tasks = Vec::with_capacity(sets.len());
            for (i, set) in sets.iter().enumerate() {
                let field = format!("array[{i}]");
                let Value::Object(o) = set else {
                    return Err(ConfigError::new(
                        field,
                        "a parameter set is an object of config keys",
                    ));
                };
                for k in SWEEP_KEYS.iter().chain(&["target", TASK_KEY]) {
                    if o.contains_key(*k) {
                        return Err(ConfigError::new(
                            format!("{field}.{k}"),
                            "a task runs where and as its sweep does: set this on the sweep",
                        ));
                    }
                }
                tasks.push(task(i as u32, o));
            }
            (tasks, None)
        }
        Value::String(s) => {
            let (indexes, cap) = parse_spec(s).map_err(|m| ConfigError::new("array", m))?;
            let empty = Map::new();
            (indexes.into_iter().map(|i| task(i, &empty)).collect(), cap)
        }
        _ => {
            return Err(ConfigError::new(
                "array",
                "a list of parameter sets, or SLURM's index form such as \"0-99%10\"",
            ));
        }
    };
    let given = match config.get("array_parallelism") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n <= MAX_TASKS as u64 => Some(n as u32),
            _ => {
                return Err(ConfigError::new(
                    "array_parallelism",
                    format!("{v} is not a count of tasks from 1 to {MAX_TASKS}"),
                ));
            }
        },
    };
    let parallelism = match (cap, given) {
        (Some(a), Some(b)) if a != b => {
            return Err(ConfigError::new(
                "array_parallelism",
                format!("{b} disagrees with the array's own %{a}"),
            ));
        }
        (a, b) => a.or(b),
    };
    Ok(Some(Sweep { tasks, parallelism }))
}

/// SLURM's index form: `"0-19"`, `"1,3,5-7"`, `"0-99:2"`, each optionally ending in `%N`.
pub fn parse_spec(s: &str) -> Result<(Vec<u32>, Option<u32>), String> {
    let bad = || {
        format!(
            "{s:?} is not SLURM's array form (such as \"0-99\", \"1,3,5-7\", \"0-98:2\" or \
             \"0-99%10\")"
        )
    };
    let (list, cap) = match s.split_once('%') {
        Some((l, c)) => (
            l,
            Some(c.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(bad)?),
        ),
        None => (s, None),
    };
    let num = |p: &str| {
        (!p.is_empty() && p.len() <= 7 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
            .ok_or_else(bad)
    };
    let mut indexes = Vec::new();
    for part in list.split(',') {
        let (range, step) = match part.split_once(':') {
            Some((r, st)) => (r, num(st)?.max(1)),
            None => (part, 1),
        };
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(range)?;
                (n, n)
            }
        };
        if b < a {
            return Err(bad());
        }
        let mut i = a;
        while i <= b {
            indexes.push(i);
            if indexes.len() > MAX_TASKS {
                return Err(format!("{s:?} has more than {MAX_TASKS} tasks"));
            }
            i += step;
        }
    }
    indexes.sort_unstable();
    indexes.dedup();
    Ok((indexes, cap))
}

/// Sorted, distinct indexes as SLURM's ranges: `[0,1,2,5,7,8]` → `"0-2,5,7-8"`.
pub fn ranges(indexes: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indexes.len() {
        let start = indexes[i];
        let mut end = start;
        while i + 1 < indexes.len() && indexes[i + 1] == end + 1 {
            i += 1;
            end = indexes[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn index_forms_read_as_sbatch_reads_them() {
        assert_eq!(parse_spec("0-3%2"), Ok((vec![0, 1, 2, 3], Some(2))));
        assert_eq!(parse_spec("1,3,5-7"), Ok((vec![1, 3, 5, 6, 7], None)));
        assert_eq!(parse_spec("0-8:4"), Ok((vec![0, 4, 8], None)));
        for bad in ["", "a", "3-1", "0-9%0", "0-9%", "1;rm", "-1", "0-99999999"] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
        assert!(parse_spec("0-20000").is_err(), "past MAX_TASKS");
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(ranges(&[4]), "4");
    }

    #[test]
    fn tasks_inherit_the_sweep_with_their_overrides() {
        let cfg = json!({"command": ["sh", "-c", "echo $X"], "env": {"X": "a"},
                         "target": {"cluster": "c"},
                         "array": [{}, {"env": {"X": "b"}}], "array_parallelism": 1});
        let s = of_config(&cfg).unwrap().unwrap();
        assert_eq!(s.array_spec(), "0-1%1");
        assert_eq!(s.tasks[1].config["env"]["X"], "b");
        assert_eq!(s.tasks[0].config["env"]["X"], "a");
        assert_eq!(s.tasks[1].config["target"]["cluster"], "c");
        assert_eq!(task_index(Some(&s.tasks[1].config)), Some(1));
        assert!(s.tasks[0].config.get("array").is_none());
        assert!(!is_sweep(Some(&s.tasks[0].config)) && is_sweep(Some(&cfg)));

        let by_range = json!({"command": ["true"], "target": {"cluster": "c"},
                              "array": "0-19%4"});
        assert_eq!(of_config(&by_range).unwrap().unwrap().tasks.len(), 20);
        assert_eq!(of_config(&json!({"command": ["true"]})).unwrap(), None);

        let field = |cfg: Value| of_config(&cfg).unwrap_err().field;
        assert_eq!(field(json!({"array": "0-3"})), "array");
        assert_eq!(
            field(json!({"target": {"cluster": "c"}, "array": [{}, {"target": {}}]})),
            "array[1].target"
        );
        assert_eq!(
            field(json!({"target": {"cluster": "c"}, "array": "0-3%2",
                         "array_parallelism": 3})),
            "array_parallelism"
        );
        assert_eq!(field(json!({"array_parallelism": 3})), "array_parallelism");
        assert_eq!(
            field(json!({"target": {"cluster": "c"}, "array": []})),
            "array"
        );
        assert_eq!(
            field(json!({"target": {"cluster": "c"}, "array": [3]})),
            "array[0]"
        );
    }
}
