//! Checks the HTML of every console page: each id used once, each form
//! control named by a label (`<label for>`, `aria-label` or a wrapping
//! label), every `<label for>` and `aria-*by` pointing at an element, every
//! element closed in order. A small scanner of the console's own output,
//! not a general HTML parser.

use std::collections::{BTreeMap, BTreeSet};

const VOID: [&str; 8] = ["meta", "link", "input", "br", "hr", "img", "source", "wbr"];
const CONTROLS: [&str; 3] = ["input", "select", "textarea"];

struct Tag {
    name: String,
    attributes: BTreeMap<String, String>,
    closing: bool,
}

/// Every problem found in `page`, as readable lines.
pub fn problems(page: &str) -> Vec<String> {
    let tags = match scan(page) {
        Ok(tags) => tags,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    let mut label_for = BTreeSet::new();
    let mut references = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    let mut controls = Vec::new();
    for tag in &tags {
        if tag.closing {
            match open.pop() {
                Some(name) if name == tag.name => {}
                other => problems.push(format!(
                    "</{}> closes <{}>",
                    tag.name,
                    other.unwrap_or("nothing")
                )),
            }
            continue;
        }
        if let Some(id) = tag.attributes.get("id") {
            if !ids.insert(id.clone()) {
                problems.push(format!("id `{id}` is used more than once"));
            }
        }
        if tag.name == "label" {
            if let Some(target) = tag.attributes.get("for") {
                label_for.insert(target.clone());
                references.push(("label for", target.clone()));
            }
        }
        for attribute in ["aria-describedby", "aria-labelledby"] {
            if let Some(target) = tag.attributes.get(attribute) {
                references.push((attribute, target.clone()));
            }
        }
        let hidden = tag.attributes.get("type").is_some_and(|t| t == "hidden");
        let is_button_input = tag
            .attributes
            .get("type")
            .is_some_and(|t| t == "submit" || t == "button");
        if CONTROLS.contains(&tag.name.as_str()) && !hidden && !is_button_input {
            let in_label = open.contains(&"label");
            controls.push((tag.attributes.clone(), in_label));
        }
        if !VOID.contains(&tag.name.as_str()) {
            open.push(&tag.name);
        }
    }
    if !open.is_empty() {
        problems.push(format!("left open: {open:?}"));
    }
    for (attributes, in_label) in controls {
        let labelled = in_label
            || attributes.contains_key("aria-label")
            || attributes
                .get("id")
                .is_some_and(|id| label_for.contains(id));
        if !labelled {
            problems.push(format!("form control without a label: {attributes:?}"));
        }
    }
    for (attribute, target) in references {
        if !ids.contains(&target) {
            problems.push(format!("{attribute} `{target}` names no element"));
        }
    }
    problems
}

/// The tags of `page` in order, with their attributes; text, comments and
/// the doctype are skipped, and so is the content of scripts.
fn scan(page: &str) -> Result<Vec<Tag>, String> {
    let mut tags = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        if rest.starts_with('!') {
            let end = rest.find('>').ok_or("unclosed <!")?;
            rest = &rest[end + 1..];
            continue;
        }
        let end = tag_end(rest).ok_or_else(|| format!("unclosed tag at `{}`", head(rest)))?;
        let text = &rest[..end];
        rest = &rest[end + 1..];
        let closing = text.starts_with('/');
        let text = text.trim_start_matches('/');
        let name_end = text.find(|c: char| c.is_whitespace()).unwrap_or(text.len());
        let name = text[..name_end].to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!("empty tag before `{}`", head(rest)));
        }
        let attributes = attributes(&text[name_end..])?;
        if name == "script" && !closing {
            let close = rest.find("</script>").ok_or("unclosed <script>")?;
            rest = &rest[close..];
        }
        tags.push(Tag {
            name,
            attributes,
            closing,
        });
    }
    Ok(tags)
}

/// Where a tag ends: the first `>` outside a quoted attribute value.
fn tag_end(text: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn attributes(mut text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    loop {
        text = text.trim_start();
        if text.is_empty() || text == "/" {
            return Ok(out);
        }
        let name_end = text
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(text.len());
        let name = text[..name_end].to_ascii_lowercase();
        text = &text[name_end..];
        let value = if let Some(after) = text.trim_start().strip_prefix('=') {
            let after = after.trim_start();
            let quote = after.chars().next().ok_or("attribute without a value")?;
            if quote != '"' && quote != '\'' {
                return Err(format!("unquoted value of `{name}`"));
            }
            let close = after[1..]
                .find(quote)
                .ok_or_else(|| format!("unclosed value of `{name}`"))?;
            text = &after[close + 2..];
            after[1..close + 1].to_string()
        } else {
            String::new()
        };
        if out.insert(name.clone(), value).is_some() {
            return Err(format!("attribute `{name}` given twice"));
        }
    }
}

fn head(text: &str) -> &str {
    &text[..text.char_indices().nth(40).map_or(text.len(), |(i, _)| i)]
}

#[cfg(test)]
mod tests {
    use super::problems;

    #[test]
    fn the_checker_finds_what_it_looks_for() {
        assert!(
            problems(r#"<form><label for="a">A</label><input id="a" name="a"></form>"#).is_empty()
        );
        assert!(problems(r#"<label>A <input name="a"></label>"#).is_empty());
        let found = problems(
            r#"<p id="x"></p><p id="x"></p><input name="b"><label for="zz">z</label><div>"#,
        );
        assert!(found.iter().any(|p| p.contains("id `x`")), "{found:?}");
        assert!(
            found.iter().any(|p| p.contains("without a label")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.contains("`zz` names no element")),
            "{found:?}"
        );
        assert!(found.iter().any(|p| p.contains("left open")), "{found:?}");
        assert!(!problems("<p></div>").is_empty());
    }
}
