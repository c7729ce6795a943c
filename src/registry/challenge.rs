//! `WWW-Authenticate` challenges: what a registry's 401 asks for.

/// How a registry wants to be asked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Send the user name and password with every request.
    Basic,
    /// Get a token from `realm` (Docker Hub's flow) and send it as `Bearer`.
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    /// Picks the challenge we can answer from a response's `WWW-Authenticate` values,
    /// preferring Bearer; `None` when there is none we know.
    pub fn pick<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        let mut basic = false;
        for h in headers {
            let (scheme, params) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
            if scheme.eq_ignore_ascii_case("bearer") {
                let params = parse_params(params);
                let get = |k: &str| params.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
                if let Some(realm) = get("realm").filter(|r| !r.is_empty()) {
                    return Some(Challenge::Bearer { realm, service: get("service"), scope: get("scope") });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
        basic.then_some(Challenge::Basic)
    }
}

/// `k1="v, 1",k2=v2` (RFC 7235 auth-params; quoted strings may hold commas and `\"`).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_string();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
            value = value.trim().to_string();
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::Challenge;

    #[test]
    fn docker_hub_bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull,push""#;
        assert_eq!(
            Challenge::pick([h]),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/python:pull,push".into()),
            })
        );
    }

    #[test]
    fn unquoted_params_basic_and_unknown_schemes() {
        let c = Challenge::pick(["bearer realm=http://127.0.0.1:1/t, service=x"]);
        assert_eq!(
            c,
            Some(Challenge::Bearer { realm: "http://127.0.0.1:1/t".into(), service: Some("x".into()), scope: None })
        );
        assert_eq!(Challenge::pick([r#"Basic realm="test""#]), Some(Challenge::Basic));
        assert_eq!(Challenge::pick(["Negotiate", r#"Bearer service="x""#]), None, "a Bearer without realm is unusable");
        assert_eq!(
            Challenge::pick([r#"Basic realm="a""#, r#"Bearer realm="r""#])
                .map(|c| matches!(c, Challenge::Bearer { .. })),
            Some(true)
        );
        let escaped = Challenge::pick([r#"Bearer realm="http://r/\"q\"",scope="a,b""#]);
        assert_eq!(
            escaped,
            Some(Challenge::Bearer { realm: "http://r/\"q\"".into(), service: None, scope: Some("a,b".into()) })
        );
    }
}
