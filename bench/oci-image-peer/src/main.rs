//! `oci-image-peer BLOB DEST`: unpack one layer blob into DEST in overlay format
//! with `oci_image::apply_layer_file` and its default options.
use oci_image::{apply_layer_file, Layout, OverlayXattr, UnpackOptions};
use std::path::Path;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [blob, dest] = a.as_slice() else {
        eprintln!("usage: oci-image-peer BLOB DEST");
        std::process::exit(2);
    };
    std::fs::create_dir_all(dest).expect("create DEST");
    let opts = UnpackOptions { layout: Layout::Overlay(OverlayXattr::Trusted), ..UnpackOptions::default() };
    if let Err(e) = apply_layer_file(Path::new(blob), Path::new(dest), &opts) {
        eprintln!("oci-image-peer: {e}");
        std::process::exit(1);
    }
}
