//! The keyword classifier: the fallback that always exists (`Router-Version: v2_keyword`).
//!
//! The rules are `models/keyword_rules.json`, compiled into the binary so no file can be missing.
//! Semantics are those of the reference, `models/eval_keywords.py`:
//! - text = `embed_text` with the rules' own slice (wider than the model's: regexes are cheap);
//! - a label's score = the sum of the weights of its patterns that match the text at least once,
//!   every pattern case-insensitive;
//! - the highest score wins, ties go to the label listed first in `tie_order`, and a best score
//!   below `min_score` gives `default_label`.
//!
//! Python's `re` and Rust's `regex` differ in a few places; the rules stay in their common subset
//! and `python_compat` rewrites the two constructs whose meaning differs:
//! - `$` (no MULTILINE): Python also matches just before a final `\n`; rewritten to `(?:\n?\z)`.
//! - `\s`: Python's also holds U+001C..U+001F (they are `str.isspace()`); rewritten to add them.
//!
//! Left as they are, because no rule or realistic prompt depends on them: Python's `\w` (and so
//! `\b`) counts No-category numerals (`²`, `½`) as word characters and combining marks (U+0300..)
//! and connector punctuation other than `_` as non-word characters; Rust's does the opposite.
//! `tests/classify.rs` checks that both give the same label on every held-out item.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::Slice;
use crate::config::schema::TASKS;
use crate::llm::Message;

/// The shipped rules (the same file `models/eval_keywords.py` reads).
pub const RULES_JSON: &str = include_str!("../../models/keyword_rules.json");

#[derive(Deserialize)]
struct RulesFile {
    slice: SliceFile,
    default_label: String,
    min_score: f64,
    tie_order: Vec<String>,
    labels: std::collections::BTreeMap<String, Vec<PatternFile>>,
}

#[derive(Deserialize)]
struct SliceFile {
    user_head: usize,
    user_tail: usize,
    system_head: usize,
    /// 0 = character cuts, otherwise the line rule (Python's truthiness).
    lines: u64,
}

#[derive(Deserialize)]
struct PatternFile {
    p: String,
    w: f64,
}

/// Compiled rules. Labels are indices into `schema::TASKS` (the first eight).
pub struct KeywordRules {
    slice: Slice,
    default: usize,
    min_score: f64,
    /// Task indices, tie winners first.
    tie_order: Vec<usize>,
    /// Every pattern of every label, as written (Unicode word boundaries).
    unicode: Vec<Regex>,
    /// The same with ASCII word boundaries, for texts where both agree (see `scores`).
    ascii: Vec<Regex>,
    /// The same without word boundaries: a superset, to rule patterns out fast (see `scores`).
    relaxed: Vec<Regex>,
    /// Per pattern: (task index, weight).
    weights: Vec<(usize, f64)>,
    /// A non-ASCII word character: where the ASCII-boundary patterns could differ.
    non_ascii_word: Regex,
}

impl KeywordRules {
    /// The rules compiled into the binary, compiled once per process (three variants of some
    /// sixty Unicode regexes are worth sharing).
    pub fn builtin() -> Result<&'static Self, String> {
        static RULES: std::sync::LazyLock<Result<KeywordRules, String>> =
            std::sync::LazyLock::new(|| KeywordRules::from_json(RULES_JSON));
        RULES.as_ref().map_err(Clone::clone)
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: RulesFile =
            serde_json::from_str(text).map_err(|e| format!("keyword rules: {e}"))?;
        let task = |name: &str| {
            TASKS[..8]
                .iter()
                .position(|t| *t == name)
                .ok_or_else(|| format!("keyword rules: unknown label `{name}`"))
        };
        let default = task(&file.default_label)?;
        let tie_order = file
            .tie_order
            .iter()
            .map(|l| task(l))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = [false; 8];
        for &t in &tie_order {
            seen[t] = true;
        }
        if tie_order.len() != 8 || seen.iter().any(|s| !s) {
            return Err("keyword rules: tie_order must list each of the 8 labels once".into());
        }
        let mut patterns = Vec::new();
        let mut weights = Vec::new();
        for (label, rules) in &file.labels {
            let t = task(label)?;
            for r in rules {
                if !r.w.is_finite() {
                    return Err(format!("keyword rules: weight of `{}` is not finite", r.p));
                }
                patterns.push(&r.p);
                weights.push((t, r.w));
            }
        }
        if file.labels.len() != 8 {
            return Err("keyword rules: `labels` must hold each of the 8 labels".into());
        }
        let compile = |p: &str, b: Boundary| {
            RegexBuilder::new(&python_compat(p, b))
                .case_insensitive(true)
                .build()
                .map_err(|e| format!("keyword rules: {e}"))
        };
        let all = |b: Boundary| {
            patterns
                .iter()
                .map(|p| compile(p, b))
                .collect::<Result<Vec<_>, _>>()
        };
        let unicode = all(Boundary::Unicode)?;
        let ascii = all(Boundary::Ascii)?;
        let relaxed = all(Boundary::Dropped)?;
        let non_ascii_word =
            Regex::new(r"[\w&&[^\x00-\x7F]]").map_err(|e| format!("keyword rules: {e}"))?;
        Ok(KeywordRules {
            slice: Slice {
                user_head: file.slice.user_head,
                user_tail: file.slice.user_tail,
                system_head: file.slice.system_head,
                max_tokens: 0,
                lines: file.slice.lines != 0,
            },
            default,
            min_score: file.min_score,
            tie_order,
            unicode,
            ascii,
            relaxed,
            weights,
            non_ascii_word,
        })
    }

    /// The slice of the request these rules read.
    pub fn slice(&self) -> &Slice {
        &self.slice
    }

    /// The task index for a request's messages.
    pub fn classify(&self, messages: &[Message]) -> usize {
        self.classify_text(&super::embed_text(messages, &self.slice))
    }

    /// The task index for an already sliced text.
    pub fn classify_text(&self, text: &str) -> usize {
        let scores = self.scores(text);
        let mut best = self.tie_order[0];
        for &t in &self.tie_order[1..] {
            // Strictly greater: on a tie the label earlier in `tie_order` keeps the lead.
            if scores[t] > scores[best] {
                best = t;
            }
        }
        if scores[best] >= self.min_score {
            best
        } else {
            self.default
        }
    }

    /// Per-task scores (indexed like `TASKS[..8]`).
    ///
    /// A Unicode `\b` stops `regex`'s DFAs at the first non-ASCII byte and the NFA takes over,
    /// 10-20x slower here (milliseconds for a 500-char French prompt). Two exact shortcuts:
    /// - when no non-ASCII character of the text is a word character (English with typographic
    ///   punctuation, or the slice's ` … `), Unicode and ASCII word boundaries fall at the same
    ///   places, so the ASCII-boundary patterns answer, on the DFAs;
    /// - otherwise a pattern with its `\b`s dropped (it matches whenever the pattern does) rules
    ///   most patterns out on the DFAs, and only the survivors run as written.
    pub fn scores(&self, text: &str) -> [f64; 8] {
        let fast = !self.non_ascii_word.is_match(text);
        let mut scores = [0.0f64; 8];
        // Pattern order is the reference's summation order.
        for (i, &(t, w)) in self.weights.iter().enumerate() {
            let hit = if fast {
                self.ascii.get(i).is_some_and(|re| re.is_match(text))
            } else {
                self.relaxed.get(i).is_some_and(|re| re.is_match(text))
                    && self.unicode.get(i).is_some_and(|re| re.is_match(text))
            };
            if hit {
                scores[t] += w;
            }
        }
        scores
    }
}

/// What `\b` (and `\B`) become in a compiled pattern.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Boundary {
    /// As written: Unicode word boundaries.
    Unicode,
    /// ASCII word boundaries.
    Ascii,
    /// Nothing: the pattern matches wherever the original does, and more.
    Dropped,
}

/// Rewrites the constructs whose meaning differs between Python's `re` and Rust's `regex` (see
/// the module docs) and the word boundaries as `boundary` says. Everything else is copied as
/// written.
fn python_compat(p: &str, boundary: Boundary) -> String {
    let mut out = String::with_capacity(p.len() + 16);
    let mut in_class = false;
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('s') if in_class => out.push_str(r"\s\x1C-\x1F"),
                Some('s') => out.push_str(r"[\s\x1C-\x1F]"),
                Some('S') if !in_class => out.push_str(r"[^\s\x1C-\x1F]"),
                // `(?-u:\B)` could match inside a UTF-8 sequence, which `regex` refuses: `\B`
                // stays Unicode in the ASCII variant (still exact, only not as fast).
                Some('b') if !in_class && boundary == Boundary::Ascii => out.push_str(r"(?-u:\b)"),
                Some('b' | 'B') if !in_class && boundary == Boundary::Dropped => {
                    out.push_str("(?:)")
                }
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A `]` (or `^]`) right after the opening bracket is a literal, in both engines.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str(r"\]");
                    chars.next();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '$' if !in_class => out.push_str(r"(?:\n?\z)"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ChatRequest;

    fn rules() -> &'static KeywordRules {
        KeywordRules::builtin().expect("shipped rules compile")
    }

    fn label(text: &str) -> &'static str {
        TASKS[rules().classify_text(text)]
    }

    fn messages(json: &str) -> Vec<Message> {
        let r: ChatRequest = serde_json::from_str(json).expect("request");
        r.messages
    }

    #[test]
    fn shipped_rules_compile_with_every_label() {
        let r = rules();
        assert_eq!(r.tie_order.len(), 8);
        assert_eq!(TASKS[r.default], "chat");
        assert!(r.weights.len() > 40);
        assert!(r.slice().user_head > 0);
    }

    #[test]
    fn clear_prompts_get_their_label() {
        assert_eq!(
            label("Translate this paragraph into German, please."),
            "translation"
        );
        assert_eq!(
            label("Extract the invoice number and total as JSON."),
            "extraction"
        );
        assert_eq!(
            label("Summarize the meeting notes below in three bullets."),
            "summarize"
        );
        assert_eq!(
            label("My Python script fails with Traceback: KeyError 'id'. Fix the function."),
            "code"
        );
        assert_eq!(
            label("Rewrite this email so it sounds more formal."),
            "rewrite"
        );
        assert_eq!(label("Write a haiku about autumn rain."), "creative");
        assert_eq!(
            label("Solve step by step: how many handshakes among 12 people?"),
            "reasoning"
        );
        assert_eq!(label("hey, how are you doing today?"), "chat");
    }

    #[test]
    fn nothing_matched_is_the_default_label() {
        assert_eq!(label(""), "chat");
        assert_eq!(label("zzz qqq"), "chat");
    }

    #[test]
    fn ties_go_to_the_earlier_label_in_tie_order() {
        // `translation` (4) and `summarize` (4): translation is listed first.
        let r = rules();
        let text = "translate and summarize";
        let s = r.scores(text);
        assert_eq!(s[7], s[6]);
        assert_eq!(TASKS[r.classify_text(text)], "translation");
    }

    #[test]
    fn a_score_below_min_score_is_the_default() {
        // Only `[!?]\s*$` (0.5) matches: below min_score 1.0.
        let r = rules();
        let s = r.scores("zzz?");
        assert_eq!(s.iter().cloned().fold(0.0, f64::max), 0.5);
        assert_eq!(TASKS[r.classify_text("zzz?")], "chat");
    }

    #[test]
    fn matching_is_case_insensitive_and_unicode_aware() {
        assert_eq!(label("TRANSLATE THIS"), "translation");
        assert_eq!(label("ÜBERSETZE bitte den Absatz"), "translation");
        assert_eq!(label("Переведи этот текст"), "translation");
        assert_eq!(label("请翻译这段话"), "translation");
    }

    #[test]
    fn each_pattern_counts_once() {
        let r = rules();
        let once = r.scores("translate");
        let many = r.scores("translate translate translate");
        assert_eq!(once, many);
    }

    #[test]
    fn python_dollar_also_matches_before_a_final_newline() {
        assert_eq!(python_compat("a$", Boundary::Unicode), r"a(?:\n?\z)");
        let re = regex::Regex::new(&python_compat("a$", Boundary::Unicode)).expect("regex");
        assert!(re.is_match("xa"));
        assert!(re.is_match("xa\n"));
        assert!(!re.is_match("xa\n\n"));
        assert!(!re.is_match("ab"));
        // Inside a class `$` is a literal; escaped it stays escaped.
        assert_eq!(python_compat(r"[$]\$", Boundary::Unicode), r"[$]\$");
    }

    #[test]
    fn python_whitespace_includes_the_information_separators() {
        let re = regex::Regex::new(&python_compat(r"a\sb", Boundary::Unicode)).expect("regex");
        assert!(re.is_match("a\u{1f}b"));
        assert!(re.is_match("a b"));
        let re = regex::Regex::new(&python_compat(r"a[\s,]b", Boundary::Unicode)).expect("regex");
        assert!(re.is_match("a\u{1c}b"));
        assert!(re.is_match("a,b"));
        assert_eq!(python_compat(r"[^]a]", Boundary::Unicode), r"[^\]a]");
        assert_eq!(python_compat(r"\\s", Boundary::Unicode), r"\\s");
    }

    #[test]
    fn ascii_boundaries_agree_where_no_non_ascii_word_character_is() {
        let r = rules();
        let texts = [
            "Summarize this … and then translate it — into German “quickly” 🙂",
            "fix(the) bug; error: KeyError → why? €20 × 3",
            "plain ascii text about a poem and a JSON schema",
        ];
        for text in texts {
            assert!(!r.non_ascii_word.is_match(text), "{text}");
            for (u, a) in r.unicode.iter().zip(&r.ascii) {
                assert_eq!(u.is_match(text), a.is_match(text), "{u} on {text:?}");
            }
        }
        // Word characters outside ASCII take the Unicode patterns, where they count as letters.
        assert!(r.non_ascii_word.is_match("übersetze"));
        assert_eq!(label("Übersetze den Text"), "translation");
        assert_eq!(
            python_compat(r"\bab\b[\b]\B", Boundary::Ascii),
            r"(?-u:\b)ab(?-u:\b)[\b]\B"
        );
    }

    #[test]
    fn dropped_boundaries_only_widen_and_confirmation_keeps_exactness() {
        let r = rules();
        assert_eq!(python_compat(r"\bab\B", Boundary::Dropped), r"(?:)ab(?:)");
        let texts = [
            "Zusammenfassung: bitte übersetze den Abschnitt ins Englische",
            "écris un poème sur la mer, s'il te plaît",
            "Переведи на английский: кратко о плане",
            "planète totale, un conte — résumé",
        ];
        for text in texts {
            assert!(r.non_ascii_word.is_match(text), "{text}");
            for (u, d) in r.unicode.iter().zip(&r.relaxed) {
                // Whatever the pattern matches, the relaxed one matches too.
                assert!(!u.is_match(text) || d.is_match(text), "{u} on {text:?}");
            }
        }
    }

    #[test]
    fn reads_the_last_user_turn_and_the_first_system_message() {
        let r = rules();
        let m = messages(
            r#"{"model":"m","messages":[
            {"role":"system","content":"You translate documents."},
            {"role":"user","content":"Write a poem about the sea."},
            {"role":"assistant","content":"..."},
            {"role":"user","content":"Now translate it to French."}]}"#,
        );
        assert_eq!(TASKS[r.classify(&m)], "translation");
    }

    #[test]
    fn malformed_rules_are_errors_not_panics() {
        assert!(KeywordRules::from_json("{}").is_err());
        let bad = RULES_JSON.replace("\"default_label\": \"chat\"", "\"default_label\": \"x\"");
        assert!(KeywordRules::from_json(&bad).is_err());
    }
}
