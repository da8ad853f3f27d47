//! `jhe validate` as a user runs it: files, folders, NDJSON on stdin, `--code`, `--schemas-dir`, exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

#[path = "../../schemas/tests/support/example_data_points.rs"]
mod examples;

const VALID_POINT: &str = r#"{"header":{"uuid":"aaaa1234-1a2b-3c4d-5e6f-000000000002","schema_id":{"namespace":"omh","name":"heart-rate","version":"2.0"},"source_creation_date_time":"2025-01-01T01:04:01-08:00","modality":"sensed"},"body":{"heart_rate":{"value":67.5,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:04:00-08:00"}}}"#;

fn jhe(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jhe"));
    command.arg("validate").args(args).env_remove("JHE_SCHEMAS_DIR").env_remove("JHE_CONFIG").env("JHE_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("the jhe binary runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("writing stdin");
    drop(input);
    child.wait_with_output().expect("jhe validate finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("jhe-validate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a folder");
        std::fs::write(&path, text).expect("writing a file");
        path
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn example_data_points_are_valid() {
    let dir = TempDir::new("examples");
    for (name, text) in examples::example_files() {
        std::fs::write(dir.0.join(name), text).expect("writing an example");
    }
    let output = jhe(&[dir.path()], None, &[]);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).is_empty());
    assert!(stderr(&output).contains("7 valid, 0 invalid"), "{}", stderr(&output));
}

#[test]
fn folders_files_and_ndjson_report_each_invalid_point() {
    let dir = TempDir::new("folder");
    dir.write("good.json", VALID_POINT);
    dir.write("nested/bad-unit.json", &VALID_POINT.replace("beats/min", "bpm"));
    let ndjson = format!("{VALID_POINT}\n\n{}\nnot json\n", VALID_POINT.replace("-08:00\"}}}", "\"}}}"));
    dir.write("points.ndjson", &ndjson);
    dir.write("ignored.txt", "not a data point");
    let output = jhe(&[dir.path()], None, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].ends_with(r#"nested/bad-unit.json: body.heart_rate.unit: expected "beats/min""#), "{}", lines[0]);
    assert!(lines[1].ends_with("points.ndjson:3: body.effective_time_frame.date_time: expected an RFC 3339 date-time with an offset, e.g. 2025-01-01T00:04:00-08:00"), "{}", lines[1]);
    assert!(lines[2].contains("points.ndjson:4: invalid JSON at line 1 column 1"), "{}", lines[2]);
    assert!(stderr(&output).contains("2 valid, 3 invalid"), "{}", stderr(&output));

    let single = jhe(&[&format!("{}/good.json", dir.path())], None, &[]);
    assert_eq!(single.status.code(), Some(0), "{}", stdout(&single));
}

#[test]
fn stdin_and_code_validate_bodies() {
    let bodies = concat!(
        r#"{"heart_rate":{"value":60,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"}}"#,
        "\n",
        r#"{"heart_rate":{"value":60,"unit":"beats/min"}}"#,
        "\n"
    );
    let output = jhe(&["--code", "omh:heart-rate:2.0"], Some(bodies), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "-:2: body.effective_time_frame: required property is missing\n");
    let older = jhe(&["-", "--code", "omh:heart-rate:1.0"], Some(bodies), &[]);
    assert_eq!(older.status.code(), Some(0), "heart-rate 1.0 does not require a time frame: {}", stdout(&older));
    let point = jhe(&["--code", "omh:blood-glucose:4.0"], Some(VALID_POINT), &[]);
    assert_eq!(point.status.code(), Some(1), "a data point is validated as --code whatever its header says");
    assert!(stdout(&point).contains("body.blood_glucose: required property is missing"), "{}", stdout(&point));
    let headerless = jhe(&[], Some(r#"{"heart_rate":{"value":60,"unit":"beats/min"}}"#), &[]);
    assert_eq!(headerless.status.code(), Some(1));
    assert!(stdout(&headerless).contains("header: required property is missing"), "{}", stdout(&headerless));
}

#[test]
fn usage_and_io_errors_exit_2() {
    let unknown = jhe(&["--code", "omh:no-such-type:1.0"], Some(""), &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("unknown data type omh:no-such-type:1.0"), "{}", stderr(&unknown));
    let malformed = jhe(&["--code", "heart-rate"], Some(""), &[]);
    assert_eq!(malformed.status.code(), Some(2));
    let missing = jhe(&["/no/such/file.json"], None, &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("/no/such/file.json does not exist"), "{}", stderr(&missing));
}

const EXTRA_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "$id": "https://example.org/schemas/acme/glucose-ketone-index-1.0.json",
  "type": "object",
  "properties": {
    "glucose_ketone_index": {"allOf": [
      {"$ref": "https://w3id.org/ieee/ieee-1752-schema/unit-value-1.0.json"},
      {"properties": {"unit": {"enum": ["GKI"]}}}
    ]},
    "effective_time_frame": {"$ref": "https://w3id.org/openmhealth/schemas/omh/time-frame-1.x.json"}
  },
  "required": ["glucose_ketone_index", "effective_time_frame"]
}"#;

#[test]
fn extra_schemas_add_site_codes() {
    let schemas = TempDir::new("schemas");
    schemas.write("acme/glucose-ketone-index-1.0.json", EXTRA_SCHEMA);
    let point = VALID_POINT
        .replace(
            r#""namespace":"omh","name":"heart-rate","version":"2.0""#,
            r#""namespace":"acme","name":"glucose-ketone-index","version":"1.0""#,
        )
        .replace(
            r#""heart_rate":{"value":67.5,"unit":"beats/min"}"#,
            r#""glucose_ketone_index":{"value":1.5,"unit":"GKI"}"#,
        );
    let bad_unit = point.replace("GKI", "mmol/L");
    let bad_time = point.replace("00:04:00-08:00", "00:04:00");
    let input = format!("{point}\n{bad_unit}\n{bad_time}\n");

    let without = jhe(&[], Some(&input), &[]);
    assert_eq!(without.status.code(), Some(1));
    assert!(stdout(&without).contains("unknown data type acme:glucose-ketone-index:1.0"), "{}", stdout(&without));

    let with = jhe(&["--schemas-dir", schemas.path()], Some(&input), &[]);
    assert_eq!(with.status.code(), Some(1), "{}", stderr(&with));
    let lines: Vec<String> = stdout(&with).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("-:2: body.glucose_ketone_index.unit: "), "{}", lines[0]);
    assert!(lines[1].starts_with("-:3: body.effective_time_frame"), "{}", lines[1]);
    assert!(stderr(&with).contains("1 valid, 2 invalid"), "{}", stderr(&with));

    let from_env =
        jhe(&["--code", "acme:glucose-ketone-index:1.0"], Some(&point), &[("JHE_SCHEMAS_DIR", schemas.path())]);
    assert_eq!(from_env.status.code(), Some(0), "{}{}", stdout(&from_env), stderr(&from_env));

    let broken = TempDir::new("broken");
    broken.write(
        "x.json",
        &EXTRA_SCHEMA
            .replace("https://w3id.org/ieee/ieee-1752-schema/unit-value-1.0.json", "https://example.org/nowhere.json"),
    );
    let output = jhe(&["--schemas-dir", broken.path()], Some(&point), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("https://example.org/nowhere.json"), "{}", stderr(&output));
}
