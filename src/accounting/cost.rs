//! Cost of one call from its usage and the endpoint's prices.

use crate::config::runtime::Price;
use crate::llm::Usage;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub input: f64,
    pub output: f64,
}

impl Cost {
    pub fn total(&self) -> f64 {
        self.input + self.output
    }
}

/// `usage.prompt_tokens` includes the cached tokens (OpenAI's meaning, which every codec
/// normalises to), so the uncached part is billed at the input price and the cached part at
/// the cached-input price.
pub fn cost(usage: &Usage, price: &Price) -> Cost {
    let cached = usage.cached_tokens.min(usage.prompt_tokens);
    let uncached = usage.prompt_tokens - cached;
    Cost {
        input: uncached as f64 * price.input + cached as f64 * price.cached_input,
        output: usage.completion_tokens as f64 * price.output,
    }
}

/// USD as a plain decimal (no exponent), for headers and JSON bodies alike.
pub fn fmt_usd(v: f64) -> String {
    if !v.is_finite() || v <= 0.0 {
        return "0".to_string();
    }
    let s = format!("{v:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_tokens_are_billed_at_the_cached_price() {
        let price = Price {
            input: 2.5e-6,
            output: 10e-6,
            cached_input: 1.25e-6,
        };
        let u = Usage {
            prompt_tokens: 1000,
            completion_tokens: 100,
            cached_tokens: 400,
            reasoning_tokens: 0,
        };
        let c = cost(&u, &price);
        assert!((c.input - (600.0 * 2.5e-6 + 400.0 * 1.25e-6)).abs() < 1e-12);
        assert!((c.output - 100.0 * 10e-6).abs() < 1e-12);
        assert_eq!(fmt_usd(c.total()), "0.003");
        assert_eq!(fmt_usd(0.0), "0");
        assert_eq!(fmt_usd(1.5e-7), "0.00000015");
    }
}
