//! The startup packet's `options` parameter (`-c name=value` pairs, as libpq's PGOPTIONS sends
//! them): pgsplit's own `pgsplit.*` settings are taken out for the session; the rest goes to
//! the servers unchanged.

/// Splits `options` into what the servers get and the `pgsplit.*` pairs pgsplit keeps.
pub fn split_options(options: &str) -> (String, Vec<(String, String)>) {
    let words = words(options);
    let mut kept: Vec<String> = Vec::new();
    let mut ours = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        let (setting, used) = if word == "-c" {
            (words.get(i + 1).map(String::as_str), 2)
        } else if let Some(rest) = word.strip_prefix("-c").or_else(|| word.strip_prefix("--")) {
            (Some(rest), 1)
        } else {
            (None, 1)
        };
        match setting.and_then(|s| s.split_once('=')) {
            Some((name, value)) if name.to_ascii_lowercase().starts_with("pgsplit.") => {
                ours.push((name.to_ascii_lowercase(), value.to_string()));
            }
            _ => kept.extend(
                words[i..(i + used).min(words.len())]
                    .iter()
                    .map(|w| escape(w)),
            ),
        }
        i += used;
    }
    (kept.join(" "), ours)
}

/// Words separated by unescaped spaces; a backslash escapes the next character (libpq's rule).
fn words(options: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn escape(word: &str) -> String {
    word.chars()
        .flat_map(|c| {
            let escaped = c == '\\' || c.is_ascii_whitespace();
            escaped
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgsplit_settings_are_taken_out_and_the_rest_kept() {
        let (kept, ours) = split_options(
            "-c geqo=off -c pgsplit.after=0/16B3 --search_path=a\\ b -cpgsplit.consistency=strong",
        );
        assert_eq!(kept, "-c geqo=off --search_path=a\\ b");
        assert_eq!(
            ours,
            vec![
                ("pgsplit.after".into(), "0/16B3".into()),
                ("pgsplit.consistency".into(), "strong".into())
            ]
        );
    }

    #[test]
    fn odd_options_survive() {
        assert_eq!(split_options(""), (String::new(), vec![]));
        assert_eq!(split_options("-c"), ("-c".to_string(), vec![]));
        assert_eq!(split_options("  -v  "), ("-v".to_string(), vec![]));
    }
}
