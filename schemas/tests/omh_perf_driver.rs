//! Temporary: a driver for callgrind.
use jhe_schemas::omh::Validators;
use serde_json::Value;

#[test]
#[ignore]
fn drive() {
    let file = std::env::var("DRIVE_FILE").unwrap_or_else(|_| "omh_heart-rate_2-0.json".into());
    let rounds: usize = std::env::var("DRIVE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let path = format!("{}/../../shared/reference/jhe-examples/data-points/{file}", env!("CARGO_MANIFEST_DIR"));
    let example: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let points: Vec<Vec<u8>> = (0..1024)
        .map(|n| {
            let mut point = example.clone();
            point["header"]["uuid"] = format!("{:08x}-1a2b-4c4d-8e6f-{n:012x}", n * 2_654_435_761 % 0xffff_ffff).into();
            point["body"]["effective_time_frame"]["date_time"] =
                format!("2025-01-{:02}T{:02}:{:02}:00-08:00", 1 + n % 28, n % 24, n % 60).into();
            serde_json::to_vec(&point).unwrap()
        })
        .collect();
    let validators = Validators::builtin();
    let _ = validators.validate_data_point(&points[0]);
    let start = std::time::Instant::now();
    let mut ok = 0;
    for _ in 0..rounds {
        for point in &points {
            ok +=
                usize::from(std::hint::black_box(validators.validate_data_point(std::hint::black_box(point))).is_ok());
        }
    }
    let per = start.elapsed().as_secs_f64() / (rounds * points.len()) as f64;
    println!("{ok} ok, {:.0} ns per point, {} bytes", per * 1e9, points[0].len());
}
