//! Value templates: a Secret key whose value is rendered from a source's output fields — a
//! `.dockerconfigjson`, an AWS shared-credentials file, a `DATABASE_URL`.
//!
//! Templates are repo content (`.secret-manager.yaml`'s `templates:` block) rendered with
//! secret values, so they run in a sandbox: MiniJinja with no loader (no `include`,
//! `import` or `extends`: nothing is read from the filesystem), no environment access, no
//! globals but the source's output fields, a bounded amount of work (fuel) and output, and
//! strict undefined variables (a misspelt field is an error, never an empty password).
//! Errors name the template and the line inside it and never quote a value.

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use std::collections::{BTreeMap, BTreeSet};
use zeroize::Zeroizing;

pub use crate::annotations::TEMPLATE_ANNOTATION;

/// The longest template source accepted (a credential file's template is a few hundred
/// bytes).
pub const MAX_TEMPLATE_BYTES: usize = 8 * 1024;

/// The longest rendered value (Kubernetes limits a whole Secret to 1 MiB).
pub const MAX_RENDERED_BYTES: usize = 256 * 1024;

/// Instructions a render may execute: far more than any real credential file needs,
/// few enough that a hostile loop ends in milliseconds.
const FUEL: u64 = 50_000;

/// What went wrong with a template, without any value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct TemplateError {
    /// The template's name in `templates:`.
    pub template: String,
    /// 1-based line inside the template, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

pub use crate::names::is_valid_template_name as is_valid_name;

/// The longest value a filter accepts: every filter grows its input by a bounded factor,
/// so with no loops, no `set` and no `*` (see [`check`]) a render's memory is bounded by
/// the template's size times this.
const MAX_FILTER_INPUT: usize = 16 * 1024;

fn bounded(v: &str) -> Result<&str, minijinja::Error> {
    if v.len() > MAX_FILTER_INPUT {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("a filter's input is longer than {MAX_FILTER_INPUT} bytes"),
        ));
    }
    Ok(v)
}

fn b64encode(v: &str) -> Result<String, minijinja::Error> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.encode(bounded(v)?.as_bytes()))
}

fn tojson(v: &Value) -> Result<String, minijinja::Error> {
    if let Some(s) = v.as_str() {
        return Ok(serde_json::Value::from(bounded(s)?).to_string());
    }
    if v.is_number() || v.kind() == minijinja::value::ValueKind::Bool {
        return Ok(v.to_string());
    }
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        "tojson takes a string, a number or a boolean",
    ))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a value is safe in
/// any part of a URL (Jinja's own `urlencode` keeps `/`, which breaks a password in the
/// user-info of a `DATABASE_URL`).
fn urlencode(v: &str) -> Result<String, minijinja::Error> {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    Ok(percent_encoding::utf8_percent_encode(bounded(v)?, RESERVED).to_string())
}

fn trim(v: &str) -> Result<String, minijinja::Error> {
    Ok(bounded(v)?.trim().to_owned())
}

fn lower(v: &str) -> Result<String, minijinja::Error> {
    Ok(bounded(v)?.to_lowercase())
}

fn upper(v: &str) -> Result<String, minijinja::Error> {
    Ok(bounded(v)?.to_uppercase())
}

/// The filters a template may use.
pub const FILTERS: &[&str] = &["b64encode", "tojson", "urlencode", "trim", "lower", "upper"];

/// The sandbox: only the filters a credential file needs, nothing that reaches outside.
fn environment() -> Environment<'static> {
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL));
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.add_filter("b64encode", b64encode);
    env.add_filter("tojson", tojson);
    env.add_filter("urlencode", urlencode);
    env.add_filter("trim", trim);
    env.add_filter("lower", lower);
    env.add_filter("upper", upper);
    env
}

/// Statements a template may use: conditionals only. Loops, `set`, macros and blocks
/// could build values of any size from a few lines.
const STATEMENTS: &[&str] = &["if", "elif", "else", "endif"];

/// What a template's tags hold, outside string literals: the statement keyword of each
/// `{% %}` and whether any `{{ }}`/`{% %}` uses `*` (repetition, power).
fn scan_tags(src: &str) -> Result<(), Forbidden> {
    let b = src.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        let open = &b[i..i + 2];
        if open == b"{#" {
            i = src[i..].find("#}").map_or(b.len(), |e| i + e + 2);
            continue;
        }
        if open != b"{{" && open != b"{%" {
            i += 1;
            continue;
        }
        let close: &[u8] = if open == b"{{" { b"}}" } else { b"%}" };
        let mut j = i + 2;
        let mut quote: Option<u8> = None;
        let mut code = Vec::new();
        while j < b.len() {
            let c = b[j];
            match quote {
                Some(_) if c == b'\\' => j += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None if b[j..].starts_with(close) => break,
                None => code.push(c),
            }
            j += 1;
        }
        let code = String::from_utf8_lossy(&code);
        if code.contains('*') {
            return Err(Forbidden::Repetition);
        }
        if open == b"{%" {
            let word = code
                .trim_start_matches(['-', '+'])
                .trim_start()
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap_or("");
            if !STATEMENTS.contains(&word) {
                return Err(Forbidden::Statement(crate::text::escape_cut(word, 40)));
            }
        }
        i = j + 2;
    }
    Ok(())
}

/// What a template may not do (found before it is compiled).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Forbidden {
    #[error("uses `*` (repetition or power): a template only arranges the source's fields")]
    Repetition,
    #[error(
        "uses `{{% {0} %}}`: templates are self-contained and use only if/elif/else (no include, import, extends, for, set, macro)"
    )]
    Statement(String),
}

fn error(template: &str, e: &minijinja::Error, with_detail: bool) -> TemplateError {
    let message = match e.kind() {
        ErrorKind::UndefinedError => {
            "uses a variable the source does not provide (the variables are its output fields, e.g. `{{ SecretAccessKey }}`)".to_owned()
        }
        ErrorKind::OutOfFuel => "does too much work (a loop too long for a credential file)".to_owned(),
        ErrorKind::TemplateNotFound => {
            "includes, imports or extends another template: templates are self-contained".to_owned()
        }
        ErrorKind::UnknownFilter => format!(
            "uses an unknown filter{} (available: {})",
            if with_detail { detail(e) } else { String::new() },
            FILTERS.join(", ")
        ),
        kind if with_detail => format!("{kind}{}", detail(e)),
        // A render error's detail may quote a value: say only what kind of error it is.
        kind => format!("{kind}"),
    };
    TemplateError {
        template: template.to_owned(),
        line: e.line(),
        message,
    }
}

fn detail(e: &minijinja::Error) -> String {
    e.detail()
        .map(|d| format!(" ({})", crate::text::escape_cut(d, 160)))
        .unwrap_or_default()
}

/// Checks that `src` is a usable template: size, syntax, no `include`/`import`/`extends`.
/// Returns the variables it reads (for `lint`: each must be an output field of the
/// source).
pub fn check(name: &str, src: &str) -> Result<BTreeSet<String>, TemplateError> {
    let bad = |message: String| TemplateError {
        template: name.to_owned(),
        line: None,
        message,
    };
    if !is_valid_name(name) {
        return Err(bad(
            "is not a valid template name (letters, digits, `-`, `_`, `.`)".into(),
        ));
    }
    if src.len() > MAX_TEMPLATE_BYTES {
        return Err(bad(format!(
            "is {} bytes, more than the {MAX_TEMPLATE_BYTES} a template may have",
            src.len()
        )));
    }
    scan_tags(src).map_err(|e| bad(e.to_string()))?;
    let env = environment();
    let t = env
        .template_from_named_str(name, src)
        .map_err(|e| error(name, &e, true))?;
    Ok(t.undeclared_variables(false).into_iter().collect())
}

/// Renders template `name` (source `src`) with `fields`, the source's output fields.
/// The result is wiped from memory when dropped.
pub fn render(
    name: &str,
    src: &str,
    fields: &BTreeMap<String, &str>,
) -> Result<Zeroizing<String>, TemplateError> {
    check(name, src)?;
    let env = environment();
    let t = env
        .template_from_named_str(name, src)
        .map_err(|e| error(name, &e, true))?;
    let ctx: BTreeMap<&str, Value> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), Value::from(*v)))
        .collect();
    let out = Zeroizing::new(t.render(ctx).map_err(|e| error(name, &e, false))?);
    if out.len() > MAX_RENDERED_BYTES {
        return Err(TemplateError {
            template: name.to_owned(),
            line: None,
            message: format!("renders more than {MAX_RENDERED_BYTES} bytes"),
        });
    }
    Ok(out)
}

/// Checks a rendered value against the Secret's `type` for key `key`: a
/// `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` must be JSON with an
/// `auths` object, a `kubernetes.io/dockercfg` Secret's `.dockercfg` a JSON object. The
/// message never quotes the value.
pub fn validate_for_type(
    secret_type: Option<&str>,
    key: &str,
    value: &str,
) -> Result<(), WrongForType> {
    match (secret_type, key) {
        (Some("kubernetes.io/dockerconfigjson"), ".dockerconfigjson") => {
            let v: serde_json::Value =
                serde_json::from_str(value).map_err(|e| WrongForType::DockerConfigJson {
                    line: e.line(),
                    column: e.column(),
                })?;
            if !v.get("auths").is_some_and(serde_json::Value::is_object) {
                return Err(WrongForType::NoAuths);
            }
            Ok(())
        }
        (Some("kubernetes.io/dockercfg"), ".dockercfg") => {
            let v: serde_json::Value =
                serde_json::from_str(value).map_err(|_| WrongForType::DockerCfg)?;
            if !v.is_object() {
                return Err(WrongForType::DockerCfg);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A rendered value its Secret's `type` does not accept (never quoting the value).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WrongForType {
    /// Not JSON.
    #[error(
        "a kubernetes.io/dockerconfigjson Secret's .dockerconfigjson must be JSON (line {line}, column {column} of the rendered value is not)"
    )]
    DockerConfigJson {
        /// Where the JSON breaks.
        line: usize,
        /// Where the JSON breaks.
        column: usize,
    },
    /// JSON without `auths`.
    #[error(
        "a kubernetes.io/dockerconfigjson Secret's .dockerconfigjson must carry an `auths` object"
    )]
    NoAuths,
    /// Not a JSON object.
    #[error("a kubernetes.io/dockercfg Secret's .dockercfg must be a JSON object")]
    DockerCfg,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(pairs: &[(&'a str, &'a str)]) -> BTreeMap<String, &'a str> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    const AWS_INI: &str = "[default]\naws_access_key_id = {{ AccessKeyId }}\naws_secret_access_key = {{ SecretAccessKey }}\n";

    #[test]
    fn renders_an_aws_credentials_file_and_a_dockerconfigjson() {
        let f = fields(&[
            ("AccessKeyId", "AKIAEXAMPLE"),
            ("SecretAccessKey", "s3cr3t/+="),
        ]);
        let out = render("aws-ini", AWS_INI, &f).unwrap();
        assert_eq!(
            out.as_str(),
            "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cr3t/+=\n"
        );
        let acr = r#"{"auths":{"myreg.azurecr.io":{"username":{{ ClientId|tojson }},"password":{{ ClientSecret|tojson }},"auth":{{ (ClientId ~ ":" ~ ClientSecret)|b64encode|tojson }}}}}"#;
        let f = fields(&[("ClientId", "app-id"), ("ClientSecret", "pa\"ss")]);
        let out = render("acr", acr, &f).unwrap();
        validate_for_type(
            Some("kubernetes.io/dockerconfigjson"),
            ".dockerconfigjson",
            &out,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["auths"]["myreg.azurecr.io"]["password"], "pa\"ss");
        assert_eq!(
            v["auths"]["myreg.azurecr.io"]["auth"],
            b64encode("app-id:pa\"ss").unwrap()
        );
        let url = "postgres://app:{{ Value|urlencode }}@db:5432/app";
        let out = render("url", url, &fields(&[("Value", "a/b c@d")])).unwrap();
        assert_eq!(out.as_str(), "postgres://app:a%2Fb%20c%40d@db:5432/app");
    }

    #[test]
    fn check_lists_the_variables_a_template_reads() {
        let vars = check("aws-ini", AWS_INI).unwrap();
        assert_eq!(
            vars.into_iter().collect::<Vec<_>>(),
            ["AccessKeyId", "SecretAccessKey"]
        );
    }

    /// Hostile templates from the repo: nothing is read, nothing runs away, and no error
    /// quotes a secret value.
    #[test]
    fn hostile_templates_are_refused_without_quoting_values() {
        let secret = "TOPSECRETVALUE";
        let f = fields(&[("Value", secret)]);
        for (src, says) in [
            ("{% include '/etc/passwd' %}", "self-contained"),
            ("{%- import 'x' as y %}", "self-contained"),
            ("{% extends '../../.git/config' %}", "self-contained"),
            (
                "{% for a in Value %}{% for b in Value %}x{% endfor %}{% endfor %}",
                "no include",
            ),
            ("{% set a = Value ~ Value %}{{ a ~ a }}", "no include"),
            ("{{ Value * 7000000 }}", "repetition"),
            ("{{ '}}' }}{{ Value ** 2 }}", "repetition"),
            ("{% macro m() %}{% endmacro %}", "no include"),
            ("{{ Valu }}", "does not provide"),
            ("{{ env.HOME }}", "does not provide"),
            ("{{ Value|fromfile }}", "unknown filter"),
            ("{{ Value + 1 }}", "invalid operation"),
            ("{{ Value[99] }}", ""),
            ("{{ Value", "syntax error"),
        ] {
            let e = render("t", src, &f).expect_err(src);
            let shown = e.to_string();
            assert!(shown.contains(says), "{src}: {shown}");
            assert!(!shown.contains(secret), "{src}: {shown}");
            assert!(shown.starts_with("template `t`"), "{shown}");
        }
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(check("t", &big).unwrap_err().message.contains("bytes"));
        // A chain that doubles its input each step stops at the filters' input bound.
        let chain = format!("{{{{ Value{} }}}}", "|tojson".repeat(40));
        let e = render("t", &chain, &f).unwrap_err();
        assert!(e.to_string().contains("invalid operation"), "{e}");
        // Quotes inside string literals are not tags; a `*` in a literal is just text.
        assert!(check("t", "{{ 'a*b %}' ~ Value }}*").is_ok());
        assert!(check("../x", "a").is_err());
    }

    #[test]
    fn a_dockerconfigjson_without_auths_is_refused_without_the_value() {
        let t = Some("kubernetes.io/dockerconfigjson");
        let e = validate_for_type(t, ".dockerconfigjson", "{\"secret\": 1").unwrap_err();
        assert_eq!(
            e,
            WrongForType::DockerConfigJson {
                line: 1,
                column: 12
            }
        );
        let e = e.to_string();
        assert!(e.contains("must be JSON") && !e.contains("secret"), "{e}");
        let e = validate_for_type(t, ".dockerconfigjson", "{\"x\": {}}").unwrap_err();
        assert_eq!(e, WrongForType::NoAuths);
        assert!(e.to_string().contains("auths"), "{e}");
        assert_eq!(
            validate_for_type(Some("kubernetes.io/dockercfg"), ".dockercfg", "[]"),
            Err(WrongForType::DockerCfg)
        );
        assert!(validate_for_type(Some("Opaque"), ".dockerconfigjson", "not json").is_ok());
    }

    #[test]
    fn template_annotations_are_read_and_checked() {
        let all: BTreeMap<String, String> = [
            ("template.config.json", "acr"),
            ("template.bad/key", "acr"),
            ("template.x", "../../etc"),
            ("source", "aws"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let keys = crate::annotations::templated_keys(&all);
        assert_eq!(keys.len(), 3);
        assert!(keys.contains(&Ok(("config.json".into(), "acr".into()))));
        assert_eq!(keys.iter().filter(|k| k.is_err()).count(), 2);
    }

    /// The templates docs/templates.md shows render to what their consumers parse.
    #[test]
    fn the_documented_templates_render() {
        let doc = include_str!("../docs/templates.md");
        let block = doc
            .split("```yaml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap();
        let cfg = crate::config::Config::from_source(Some(block)).unwrap();
        assert_eq!(cfg.templates.len(), 4);
        let f = fields(&[
            ("AccessKeyId", "AKIAEXAMPLE"),
            ("SecretAccessKey", "abc/def+ghi"),
            ("ClientId", "00000000-0000-0000-0000-000000000003"),
            ("ClientSecret", "s~e\"cret"),
            (
                "KeyFileJson",
                "{\"type\": \"service_account\", \"private_key\": \"-----BEGIN\\n\"}",
            ),
            ("Value", "p@ss/word"),
        ]);
        for (name, src) in &cfg.templates {
            let out = render(name, src, &f).unwrap();
            if name.ends_with("-pull") {
                validate_for_type(
                    Some("kubernetes.io/dockerconfigjson"),
                    ".dockerconfigjson",
                    &out,
                )
                .unwrap();
            }
        }
        let url = render("session-db-url", &cfg.templates["session-db-url"], &f).unwrap();
        assert_eq!(
            url.as_str(),
            "postgres://app:p%40ss%2Fword@db.service1:5432/app"
        );
        let gar = render("gar-pull", &cfg.templates["gar-pull"], &f).unwrap();
        let v: serde_json::Value = serde_json::from_str(&gar).unwrap();
        let pw = v["auths"]["europe-docker.pkg.dev"]["password"]
            .as_str()
            .unwrap();
        assert!(pw.starts_with("{\"type\""), "{pw}");
    }
}
