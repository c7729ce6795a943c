//! `import -c/--change` and `commit -c/--change`: Dockerfile instructions applied to a
//! new image's config, as Docker's. Each is parsed by the build's own Dockerfile reader
//! and applied as a build applies it; those Docker does not take there are refused by name.

use anyhow::{bail, Context};
use layers_store::images::oci::RuntimeConfig;

use super::frontend::instruction::{parse, Instruction};
use super::plan::{config, Scope};

/// Applies each of `changes` (one instruction each: CMD, ENTRYPOINT, ENV, EXPOSE,
/// LABEL, ONBUILD, USER, VOLUME, WORKDIR, as Docker takes them) to `runtime`.
pub fn apply(runtime: &mut RuntimeConfig, changes: &[String]) -> anyhow::Result<()> {
    let mut scope = Scope::for_changes(std::mem::take(runtime));
    for text in changes {
        // The reader wants a FROM first; the change is the line after it.
        let parsed = parse("--change", &format!("FROM scratch\n{text}"))
            .map_err(|e| anyhow::anyhow!("--change {text:?}: {e}"))?;
        let [_, one] = parsed.instructions.as_slice() else {
            bail!("--change {text:?}: give one instruction");
        };
        match &one.instruction {
            Instruction::Cmd { .. }
            | Instruction::Entrypoint { .. }
            | Instruction::Env { .. }
            | Instruction::Expose { .. }
            | Instruction::Label { .. }
            | Instruction::Onbuild { .. }
            | Instruction::User { .. }
            | Instruction::Volume { .. }
            | Instruction::Workdir { .. } => {}
            _ => {
                let word = text.split_whitespace().next().unwrap_or_default().to_uppercase();
                bail!("--change {text:?}: {word} is not a change Docker applies (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR)")
            }
        }
        config::apply(&mut scope, &one.instruction).with_context(|| format!("--change {text:?}"))?;
    }
    *runtime = scope.config;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_as_a_dockerfile_s_and_others_are_refused_by_name() {
        let mut rt = RuntimeConfig::default();
        let changes = ["CMD [\"/bin/app\", \"-v\"]", "ENV A=1 B=two", "WORKDIR /srv", "EXPOSE 80", "USER 1000"];
        apply(&mut rt, &changes.map(String::from)).unwrap();
        assert_eq!(rt.cmd, Some(vec!["/bin/app".to_string(), "-v".to_string()]));
        assert_eq!(rt.env_var("B"), Some("two"));
        assert_eq!(rt.working_dir.as_deref(), Some("/srv"));
        assert_eq!(rt.user.as_deref(), Some("1000"));
        assert!(rt.exposed_ports.as_ref().is_some_and(|p| p.contains_key("80/tcp")));
        for (bad, says) in
            [("RUN true", "RUN is not a change"), ("FROM x", "FROM is not a change"), ("", "one instruction")]
        {
            let e = apply(&mut RuntimeConfig::default(), &[bad.to_string()]).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
