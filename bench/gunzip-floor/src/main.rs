//! `gunzip-floor FILE`: inflates FILE (gzip, every member) from memory and prints the
//! seconds inflating took, the bytes it made, and the seconds sha256 took over both
//! the compressed and the inflated bytes (a pull verifies both digests), each timed
//! apart, with the inflater and the sha256 layers itself uses.

use std::io::Read;
use std::time::{Duration, Instant};

use sha2::Digest;

fn main() {
    let path = std::env::args().nth(1).expect("usage: gunzip-floor FILE");
    let data = std::fs::read(&path).expect("read the file");
    let start = Instant::now();
    let mut dec = flate2::read::MultiGzDecoder::new(&data[..]);
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    let mut hashing = Duration::ZERO;
    let mut diff_id = sha2::Sha256::new();
    loop {
        let n = dec.read(&mut buf).expect("inflate");
        if n == 0 {
            break;
        }
        total += n as u64;
        let t = Instant::now();
        diff_id.update(&buf[..n]);
        hashing += t.elapsed();
    }
    let inflating = start.elapsed() - hashing;
    let t = Instant::now();
    let blob = sha2::Sha256::digest(&data);
    hashing += t.elapsed();
    // Keep both digests alive so neither hash is optimised away.
    std::hint::black_box((blob, diff_id.finalize()));
    println!("{:.4} {total} {:.4}", inflating.as_secs_f64(), hashing.as_secs_f64());
}
