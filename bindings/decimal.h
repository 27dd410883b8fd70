/* The exact-decimal core of steward.decimal, without Lua: parsing decimal strings into GMP
 * rationals, printing them back, rounding at a scale, and ISO 4217 minor units. Split from the
 * binding so the parser can be fuzzed on its own (tests/fuzz/decimal_fuzz.c). */
#ifndef STEWARD_DECIMAL_H
#define STEWARD_DECIMAL_H

#include <gmp.h>
#include <stddef.h>

/* Limits of what decimal_parse accepts: at most DECIMAL_MAX_DIGITS significant digits (leading
 * and trailing zeros aside), at most DECIMAL_MAX_PLACES digits before the point and as many
 * after it once the exponent is applied, and at most DECIMAL_MAX_LENGTH bytes. They bound the
 * memory one parse can ask for, and every value inside them prints (decimal_print, at any scale
 * up to DECIMAL_MAX_SCALE) as a string that parses back. */
#define DECIMAL_MAX_DIGITS 1000
#define DECIMAL_MAX_PLACES 2000
#define DECIMAL_MAX_LENGTH 8192
#define DECIMAL_MAX_SCALE  100
/* The largest numerator or denominator a result may have (about 39,000 decimal digits): GMP
 * works on a value inside one C call, where the policy CPU guard cannot stop it, so values stay
 * small enough that every operation on them is quick. */
#define DECIMAL_MAX_BITS 131072

enum decimal_mode {
    DECIMAL_HALF_EVEN,
    DECIMAL_HALF_UP,
    DECIMAL_HALF_DOWN,
    DECIMAL_UP,
    DECIMAL_DOWN,
    DECIMAL_CEILING,
    DECIMAL_FLOOR,
    DECIMAL_MODES
};

/* The modes' names, indexed by enum decimal_mode. */
extern const char *const decimal_mode_names[DECIMAL_MODES + 1];

/* Parses s[0..len) into out (initialised by the caller). 0 on success; -1 with *why set to a
 * static reason ("is not a decimal number", ...) on failure, out left unchanged. */
int decimal_parse(mpq_t out, const char *s, size_t len, const char **why);

/* The number of fraction digits the shortest exact decimal form of q needs, or -1 when q
 * has none (its denominator has a prime factor other than 2 and 5). */
long decimal_exact_scale(const mpq_t q);

/* An upper bound of the bytes decimal_print writes for q at scale, its NUL included. */
size_t decimal_print_size(const mpq_t q, unsigned long scale);

/* Writes q with exactly scale fraction digits into buf (decimal_print_size bytes) and
 * returns the length. q * 10^scale must be an integer (decimal_exact_scale(q) <= scale). */
size_t decimal_print(char *buf, const mpq_t q, unsigned long scale);

/* out = q rounded to scale fraction digits by mode. out may be q. */
void decimal_round(mpq_t out, const mpq_t q, unsigned long scale, enum decimal_mode mode);

/* ISO 4217 minor units of an alphabetic code: 0..4; -1 for an unknown code; -2 for a code
 * with no minor unit (gold, SDR, the test code XTS, ...). */
int decimal_currency_scale(const char *code, size_t len);

/* The i-th entry of the table (sorted by code): its scale as above, -3 past the end. */
int decimal_currency_at(size_t i, const char **code);

#endif
