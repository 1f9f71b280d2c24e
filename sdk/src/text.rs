//! Text matching helpers for message-driven plugins: case- and
//! diacritic-insensitive folding and keyword search on word boundaries.
//!
//! ```
//! use flowgate_sdk::text::{fold, contains_keyword};
//!
//! let message = fold("Quanto CUSTA a entrega? Está disponível?");
//! assert!(contains_keyword(&message, &fold("disponivel")));
//! assert!(contains_keyword(&message, &fold("quanto custa")));
//! assert!(!contains_keyword(&message, &fold("usta")), "keywords start on a word boundary");
//! ```

/// Lower-case `text` and strip diacritics from Latin letters (`É` → `e`,
/// `ß` → `ss`, `ø` → `o`), so matching ignores case and accents. Other
/// scripts are lower-cased and kept as they are.
pub fn fold(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            folded.push(c.to_ascii_lowercase());
            continue;
        }
        match fold_latin(c) {
            Some(replacement) => folded.push_str(replacement),
            None => folded.extend(c.to_lowercase()),
        }
    }
    folded
}

/// Whether `keyword` occurs in `text` starting at a word boundary. Both are
/// expected to be [`fold`]ed. A keyword may span several words
/// (`"how much"`); it may end inside a word, so `price` matches `prices`.
pub fn contains_keyword(text: &str, keyword: &str) -> bool {
    let keyword = keyword.trim();
    if keyword.is_empty() {
        return false;
    }
    text.match_indices(keyword).any(|(start, _)| {
        text[..start]
            .chars()
            .next_back()
            .is_none_or(|before| !before.is_alphanumeric())
    })
}

/// Whether any of `keywords` (folded) occurs in `text` (folded); returns the
/// first that does.
pub fn find_keyword<'k>(text: &str, keywords: &'k [String]) -> Option<&'k str> {
    keywords
        .iter()
        .map(String::as_str)
        .find(|keyword| contains_keyword(text, keyword))
}

/// Split a comma-separated list, trimming and folding each entry and
/// dropping empty ones: the usual format of keyword lists in configuration.
pub fn keyword_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(|k| fold(k.trim()))
        .filter(|k| !k.is_empty())
        .collect()
}

/// Folding for the Latin-1 Supplement and Latin Extended-A blocks, which
/// cover the accented letters of the Western and Central European languages
/// (and Portuguese, Spanish, Turkish, Polish…).
fn fold_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'à'..='å' | 'Ā'..='ą' => "a",
        'Æ' | 'æ' => "ae",
        'Ç' | 'ç' | 'Ć'..='č' => "c",
        'Ď'..='đ' | 'Ð' | 'ð' => "d",
        'È'..='Ë' | 'è'..='ë' | 'Ē'..='ě' => "e",
        'Ĝ'..='ģ' => "g",
        'Ĥ'..='ħ' => "h",
        'Ì'..='Ï' | 'ì'..='ï' | 'Ĩ'..='ı' => "i",
        'Ĳ' | 'ĳ' => "ij",
        'Ĵ' | 'ĵ' => "j",
        'Ķ' | 'ķ' | 'ĸ' => "k",
        'Ĺ'..='ł' => "l",
        'Ñ' | 'ñ' | 'Ń'..='ŋ' => "n",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' | 'Ō'..='ő' => "o",
        'Œ' | 'œ' => "oe",
        'Ŕ'..='ř' => "r",
        'Ś'..='š' => "s",
        'ß' => "ss",
        'Ţ'..='ŧ' => "t",
        'Þ' | 'þ' => "th",
        'Ù'..='Ü' | 'ù'..='ü' | 'Ũ'..='ų' => "u",
        'Ŵ' | 'ŵ' => "w",
        'Ý' | 'ý' | 'ÿ' | 'Ŷ'..='Ÿ' => "y",
        'Ź'..='ž' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_diacritics_across_european_languages() {
        assert_eq!(fold("Preço"), "preco");
        assert_eq!(fold("GRÖSSE Größe"), "grosse grosse");
        assert_eq!(fold("Łódź"), "lodz");
        assert_eq!(fold("Ñandú"), "nandu");
        assert_eq!(fold("ØRESUND"), "oresund");
        assert_eq!(fold("İstanbul"), "istanbul");
        assert_eq!(
            fold("Привет"),
            "привет",
            "other scripts are lower-cased only"
        );
    }

    #[test]
    fn keywords_match_at_word_starts_only() {
        let text = fold("What are your prices? I'd like to buy-now.");
        assert!(contains_keyword(&text, "price"));
        assert!(contains_keyword(&text, "buy"));
        assert!(contains_keyword(&text, "like to"));
        assert!(!contains_keyword(&text, "rices"));
        assert!(!contains_keyword(&text, ""));
        assert!(!contains_keyword(&text, "   "));
    }

    #[test]
    fn keyword_lists_are_folded_and_trimmed() {
        assert_eq!(keyword_list(" Preço , ,Comprar"), vec!["preco", "comprar"]);
        let list = keyword_list("refund, broken");
        assert_eq!(
            find_keyword(&fold("It arrived BROKEN"), &list),
            Some("broken")
        );
    }
}
