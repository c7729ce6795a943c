//! `layers build`: a Dockerfile to an image, one layer (or config change) per
//! instruction, with a content-keyed cache. Parse (`dockerfile`, `instruction`,
//! `words`) → plan of stages → steps.

// The parser lands before the executor that uses it.
#![cfg_attr(not(test), allow(dead_code))]

pub mod dockerfile;
pub mod instruction;
pub mod words;

#[cfg(test)]
mod golden {
    //! `fixtures/dockerfile/<case>/{Dockerfile,expected}`: what the parser makes of
    //! each case, one JSON instruction per line, or `error: FILE:LINE:COLUMN: MESSAGE`.
    //! `LAYERS_BLESS=1 cargo test golden` rewrites the expected files (read the diff!).

    use std::path::Path;

    fn render(text: &str) -> String {
        match super::instruction::parse("Dockerfile", text) {
            Ok(d) => {
                let mut out = String::new();
                if let Some(s) = &d.syntax {
                    out.push_str(&format!("# syntax={s}\n"));
                }
                if d.escape != '\\' {
                    out.push_str(&format!("# escape={}\n", d.escape));
                }
                for i in &d.instructions {
                    out.push_str(&serde_json::to_string(i).expect("instructions serialize"));
                    out.push('\n');
                }
                out
            }
            Err(e) => format!("error: {e}\n"),
        }
    }

    #[test]
    fn every_case_parses_as_expected() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dockerfile");
        let bless = std::env::var_os("LAYERS_BLESS").is_some();
        let mut cases: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
        cases.sort();
        assert!(cases.len() >= 30, "at least 30 golden cases, found {}", cases.len());
        let mut failed = Vec::new();
        for case in &cases {
            let text = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
            let got = render(&text);
            let expected_path = case.join("expected");
            if bless {
                std::fs::write(&expected_path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
            if got != want {
                failed.push(format!("{}:\n--- want\n{want}--- got\n{got}", case.display()));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }
}
