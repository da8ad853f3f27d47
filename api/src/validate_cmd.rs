//! `jhe validate`: Open mHealth data points from files, folders or NDJSON on stdin, one line per invalid point
//! (`file[:line]: path: rule`), a summary on stderr, exit 0 (all valid), 1 (some invalid) or 2 (usage/I/O).

use crate::cli::ValidateArgs;
use anyhow::{Context, bail};
use jhe_schemas::omh::{SchemaId, Validators};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

pub fn run(args: &ValidateArgs) -> i32 {
    match validate(args) {
        Ok(tally) => {
            eprintln!("{} valid, {} invalid", tally.valid, tally.invalid);
            i32::from(tally.invalid > 0)
        }
        Err(error) => {
            eprintln!("jhe validate: {error:#}");
            2
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    valid: usize,
    invalid: usize,
}

struct Checker<W: Write> {
    validators: Validators,
    code: Option<SchemaId>,
    out: W,
    tally: Tally,
}

impl<W: Write> Checker<W> {
    fn check(&mut self, label: &str, document: &[u8]) -> anyhow::Result<()> {
        match self.validators.validate_document(document, self.code.as_ref()) {
            Ok(()) => self.tally.valid += 1,
            Err(error) => {
                self.tally.invalid += 1;
                writeln!(self.out, "{label}: {error}").context("writing to stdout")?;
            }
        }
        Ok(())
    }

    /// Every non-blank line of `reader` is a document, labelled `name:line`.
    fn check_lines(&mut self, name: &str, reader: impl BufRead) -> anyhow::Result<()> {
        for (index, line) in reader.split(b'\n').enumerate() {
            let line = line.with_context(|| format!("reading {name}"))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.check(&format!("{name}:{}", index + 1), &line)?;
        }
        Ok(())
    }

    fn check_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let name = path.display().to_string();
        if path.extension().is_some_and(|ext| ext == "ndjson") {
            let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
            self.check_lines(&name, std::io::BufReader::new(file))
        } else {
            let text = std::fs::read(path).with_context(|| format!("reading {name}"))?;
            self.check(&name, &text)
        }
    }
}

/// The *.json and *.ndjson files under `dir`, sorted.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the folder {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the folder {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "json" || ext == "ndjson") {
            out.push(path);
        }
    }
    Ok(())
}

/// The extra JSON Schemas of `dir` (every *.json file, recursively).
pub fn load_validators(dir: Option<&Path>) -> anyhow::Result<Validators> {
    let Some(dir) = dir else {
        return Ok(Validators::builtin());
    };
    let mut files = Vec::new();
    files_under(dir, &mut files)?;
    let mut schemas = Vec::new();
    for file in files.iter().filter(|file| file.extension().is_some_and(|ext| ext == "json")) {
        let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        schemas.push(serde_json::from_slice(&text).with_context(|| format!("parsing the schema {}", file.display()))?);
    }
    Validators::with_extra_schemas(schemas).with_context(|| format!("loading the schemas of {}", dir.display()))
}

fn validate(args: &ValidateArgs) -> anyhow::Result<Tally> {
    let code = args.code.as_deref().map(str::parse::<SchemaId>).transpose()?;
    let validators = load_validators(args.schemas_dir.as_deref())?;
    if let Some(code) = &code
        && !validators.is_known(code)
    {
        bail!("unknown data type {code} (not builtin, and not in --schemas-dir)");
    }
    let out = BufWriter::new(std::io::stdout().lock());
    let mut checker = Checker { validators, code, out, tally: Tally::default() };
    let read_stdin = args.paths.is_empty() || args.paths.iter().all(|path| path.as_os_str() == "-");
    if read_stdin {
        checker.check_lines("-", std::io::stdin().lock())?;
    } else {
        for path in &args.paths {
            if path.as_os_str() == "-" {
                checker.check_lines("-", std::io::stdin().lock())?;
            } else if path.is_dir() {
                let mut files = Vec::new();
                files_under(path, &mut files)?;
                for file in files {
                    checker.check_file(&file)?;
                }
            } else if path.exists() {
                checker.check_file(path)?;
            } else {
                bail!("{} does not exist", path.display());
            }
        }
    }
    checker.out.flush().context("writing to stdout")?;
    Ok(checker.tally)
}
