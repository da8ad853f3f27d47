//! The external reference data the conformance suites read: the official Open mHealth schemas and test data, the
//! IEEE 1752 schemas and the reference's example data points. None of it is part of this repository; each folder
//! is named by an environment variable, by default under `../shared/reference` beside the clone. A suite whose
//! data is absent is not run: it passes after saying so on stderr and appending the same line to the file named by
//! `JHE_NOT_RUN_FILE` (set by `scripts/test`, which prints those lines at the end).
#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// One folder of reference data.
pub struct Reference {
    /// The environment variable that names the folder.
    pub variable: &'static str,
    /// Its place under `../shared/reference` beside the clone, used when the variable is unset.
    pub default: &'static str,
    /// What the folder holds.
    pub what: &'static str,
    /// Where it is published.
    pub published: &'static str,
}

pub const OMH_SCHEMAS: Reference = Reference {
    variable: "JHE_OMH_SCHEMAS",
    default: "openmhealth/schema",
    what: "the Open mHealth schemas",
    published: "https://github.com/openmhealth/schemas, folder schema",
};

pub const OMH_TEST_DATA: Reference = Reference {
    variable: "JHE_OMH_TEST_DATA",
    default: "openmhealth/test-data",
    what: "the Open mHealth test data",
    published: "https://github.com/openmhealth/schemas, folder test-data",
};

pub const IEEE_SCHEMAS: Reference = Reference {
    variable: "JHE_IEEE_SCHEMAS",
    default: "ieee-1752",
    what: "the IEEE 1752 schemas",
    published: "https://opensource.ieee.org/omh/1752, folder schemas",
};

pub const EXAMPLE_DATA_POINTS: Reference = Reference {
    variable: "JHE_EXAMPLE_DATA_POINTS",
    default: "jhe-examples/data-points",
    what: "the reference's example data points",
    published: "https://github.com/jupyterhealth/jupyterhealth-exchange",
};

/// The folder `reference` names: its variable when set, else its place under `../shared/reference` beside the
/// clone (the crate's folder is one level inside the clone).
fn location(reference: &Reference) -> PathBuf {
    std::env::var_os(reference.variable).map(PathBuf::from).unwrap_or_else(|| {
        let beside_the_clone = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap_or(Path::new("/"));
        beside_the_clone.join("shared/reference").join(reference.default)
    })
}

/// The folders `suite` needs, in the order asked for; `None` when any is not a folder, after reporting that
/// `suite` was not run and what to set.
pub fn reference_folders<const N: usize>(suite: &str, needs: [&Reference; N]) -> Option<[PathBuf; N]> {
    let folders = needs.map(location);
    let missing: Vec<String> = needs
        .iter()
        .zip(&folders)
        .filter(|(_, folder)| !folder.is_dir())
        .map(|(reference, folder)| {
            let (variable, what, published) = (reference.variable, reference.what, reference.published);
            format!("set {variable} to {what} (none at {}; published at {published})", folder.display())
        })
        .collect();
    if missing.is_empty() {
        return Some(folders);
    }
    report_not_run(&format!("reference data not found: {suite} not run; {}", missing.join("; ")));
    None
}

/// Says on stderr (written directly, so that libtest's capture does not hide it) and in `JHE_NOT_RUN_FILE` that a
/// suite was not run.
fn report_not_run(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(path) = std::env::var_os("JHE_NOT_RUN_FILE") {
        // one write of one line with O_APPEND, so that tests running in parallel do not interleave
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|error| panic!("JHE_NOT_RUN_FILE {}: {error}", PathBuf::from(&path).display()));
        file.write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|error| panic!("JHE_NOT_RUN_FILE {}: {error}", PathBuf::from(&path).display()));
    }
}
