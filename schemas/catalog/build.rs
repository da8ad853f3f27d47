// `sqlx::migrate!` embeds the migrations at compile time, but cargo does not know it reads that folder: without this,
// a new migration file would not rebuild the crate (sqlx's documented fix).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
