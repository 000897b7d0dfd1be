//! `include/s1kit.h` is what cbindgen generates from `src/lib.rs` today: a changed C API without a
//! regenerated header fails here. Regenerate with `S1KIT_BLESS=1 cargo test -p s1kit-capi --test header`.

use std::path::PathBuf;

#[test]
fn checked_in_header_matches_cbindgen() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses src/lib.rs")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("utf-8 header");
    let path = dir.join("include").join("s1kit.h");
    if std::env::var_os("S1KIT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/s1kit.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/s1kit.h is stale: regenerate it with `S1KIT_BLESS=1 cargo test -p s1kit-capi --test header` and commit it"
    );
}
