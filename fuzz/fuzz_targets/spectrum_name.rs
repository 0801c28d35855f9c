//! The LAMOST file-name parser (`GET /api/spectra/{filename}`): no panic, and every name it
//! accepts matches `^spec-\d+-[A-Za-z0-9]+_sp\d+-\d+\.fits$`, so its plan directory is one
//! plain component that cannot leave the spectra root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mljm::spectra::model::SpectrumName;

#[global_allocator]
static ALLOC: mljm_fuzz::Bounded = mljm_fuzz::Bounded;

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The pattern, written the other way round from the parser: split on every separator.
fn matches(name: &str) -> bool {
    let Some(body) = name
        .strip_prefix("spec-")
        .and_then(|r| r.strip_suffix(".fits"))
    else {
        return false;
    };
    let parts: Vec<&str> = body.splitn(2, '-').collect();
    let [lmjd, rest] = parts[..] else {
        return false;
    };
    let Some(us) = rest.find('_') else {
        return false;
    };
    let (plan, rest) = (&rest[..us], &rest[us + 1..]);
    let Some(rest) = rest.strip_prefix("sp") else {
        return false;
    };
    let Some((spid, fiber)) = rest.split_once('-') else {
        return false;
    };
    digits(lmjd)
        && !plan.is_empty()
        && plan.bytes().all(|b| b.is_ascii_alphanumeric())
        && digits(spid)
        && digits(fiber)
}

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    match SpectrumName::parse(name) {
        Ok(n) => {
            assert_eq!(n.as_str(), name);
            assert!(matches(name), "{name:?} accepted off the pattern");
            let plan = n.plan_id();
            assert!(
                !plan.is_empty() && plan.bytes().all(|b| b.is_ascii_alphanumeric()),
                "plan directory {plan:?} of {name:?}"
            );
            assert!(
                name.contains(&format!("-{plan}_sp")),
                "{plan:?} is the plan of {name:?}"
            );
        }
        Err(e) => {
            assert!(!matches(name), "{name:?} refused: {e}");
            assert!(
                e.0.chars().count() <= 200,
                "the message quotes at most 200 characters"
            );
        }
    }
});
