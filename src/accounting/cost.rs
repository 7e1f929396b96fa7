//! Cost of one call from its usage and the endpoint's prices.
//!
//! Every codec normalises usage to OpenAI's meaning (see `llm::Usage`), so one formula serves all
//! providers: the input side splits `prompt_tokens` into cache reads, cache writes and the rest;
//! the output side splits `completion_tokens` into reasoning and the rest.

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

pub fn cost(usage: &Usage, price: &Price) -> Cost {
    let cached = usage.cached_tokens.min(usage.prompt_tokens);
    let written = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
    let plain_in = usage.prompt_tokens - cached - written;
    let reasoning = usage.reasoning_tokens.min(usage.completion_tokens);
    let plain_out = usage.completion_tokens - reasoning;
    Cost {
        input: plain_in as f64 * price.input
            + cached as f64 * price.cached_input
            + written as f64 * price.cache_write
            + price.per_call_input,
        output: plain_out as f64 * price.output + reasoning as f64 * price.reasoning,
    }
}

/// USD as a plain decimal (no exponent) to 10 places, trailing zeros dropped, for headers and
/// JSON bodies alike. Integer formatting: `format!("{v:.10}")` (exact float formatting) was a
/// visible share of the request path, and this runs three times per response.
pub fn fmt_usd(v: f64) -> String {
    // 1e-10 USD units; amounts past ~1.8e9 USD saturate, which no call costs.
    let units = (v * 1e10).round();
    if !units.is_finite() || units < 1.0 {
        return "0".to_string();
    }
    let units = units as u64;
    let (int, frac) = (units / 10_000_000_000, units % 10_000_000_000);
    let mut b = itoa::Buffer::new();
    let mut s = String::with_capacity(24);
    s.push_str(b.format(int));
    if frac > 0 {
        let digits = b.format(frac);
        s.push('.');
        for _ in digits.len()..10 {
            s.push('0');
        }
        s.push_str(digits.trim_end_matches('0'));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price() -> Price {
        Price {
            input: 2.5e-6,
            output: 10e-6,
            cached_input: 1.25e-6,
            cache_write: 3.125e-6,
            reasoning: 10e-6,
            image: 0.001,
            per_call_input: 0.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn cached_tokens_are_billed_at_the_cached_price() {
        let u = Usage {
            prompt_tokens: 1000,
            completion_tokens: 100,
            cached_tokens: 400,
            ..Default::default()
        };
        let c = cost(&u, &price());
        assert!(close(c.input, 600.0 * 2.5e-6 + 400.0 * 1.25e-6));
        assert!(close(c.output, 100.0 * 10e-6));
        assert_eq!(fmt_usd(c.total()), "0.003");
        assert_eq!(fmt_usd(0.0), "0");
        assert_eq!(fmt_usd(1.5e-7), "0.00000015");
        for (v, want) in [
            (1.0, "1"),
            (12.5, "12.5"),
            (0.1 + 0.2, "0.3"),
            (1e-10, "0.0000000001"),
            (4e-11, "0"),
            (-1.0, "0"),
            (f64::NAN, "0"),
            (f64::INFINITY, "0"),
            (1_234.000_000_05, "1234.00000005"),
        ] {
            assert_eq!(fmt_usd(v), want, "{v}");
        }
    }

    #[test]
    fn cache_writes_reasoning_and_images_have_their_own_prices() {
        let p = Price {
            reasoning: 20e-6,
            ..price()
        }
        .for_call(2);
        let u = Usage {
            prompt_tokens: 1_000,
            cached_tokens: 300,
            cache_write_tokens: 200,
            completion_tokens: 150,
            reasoning_tokens: 100,
        };
        let c = cost(&u, &p);
        assert!(close(
            c.input,
            500.0 * 2.5e-6 + 300.0 * 1.25e-6 + 200.0 * 3.125e-6 + 2.0 * 0.001
        ));
        assert!(close(c.output, 50.0 * 10e-6 + 100.0 * 20e-6));
    }

    #[test]
    fn inconsistent_counts_never_go_negative() {
        // A provider that reports more cached than prompt tokens must not produce a negative.
        let u = Usage {
            prompt_tokens: 10,
            cached_tokens: 50,
            cache_write_tokens: 50,
            completion_tokens: 1,
            reasoning_tokens: 9,
        };
        let c = cost(&u, &price());
        assert!(c.input >= 0.0 && c.output >= 0.0);
        assert!(close(c.input, 10.0 * 1.25e-6));
        assert!(close(c.output, 10e-6));
    }
}
