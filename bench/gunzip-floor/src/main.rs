//! `gunzip-floor FILE`: inflates FILE (gzip, every member) and prints the seconds it
//! took, reading from memory so only inflating is timed.

use std::io::Read;

fn main() {
    let path = std::env::args().nth(1).expect("usage: gunzip-floor FILE");
    let data = std::fs::read(&path).expect("read the file");
    let start = std::time::Instant::now();
    let mut dec = flate2::read::MultiGzDecoder::new(&data[..]);
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = dec.read(&mut buf).expect("inflate");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    println!("{:.4} {total}", start.elapsed().as_secs_f64());
}
