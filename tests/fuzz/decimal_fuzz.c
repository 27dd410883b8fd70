/* libFuzzer target for steward.decimal's string parser and printer (bindings/decimal_text.c,
 * decimal_round.c). The first input byte picks a rounding scale and mode; the rest is the
 * string. Checks the contract: a refused string leaves the value untouched and gives a reason;
 * an accepted one has a finite decimal form, prints without an exponent, and the print parses
 * back to the same value; rounding gives at most `scale` fraction digits, lies between the
 * floor and ceiling roundings, and is idempotent. Everything GMP allocates is cleared on every
 * path (LeakSanitizer). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_print(const mpq_t q, unsigned long scale)
{
    char *buf = malloc(decimal_print_size(q, scale));
    size_t n = decimal_print(buf, q, scale);
    if (n + 1 > decimal_print_size(q, scale) || strlen(buf) != n || strpbrk(buf, "eE/"))
        abort();
    mpq_t back;
    mpq_init(back);
    const char *why = NULL;
    if (decimal_parse(back, buf, n, &why) != 0 || !mpq_equal(back, q))
        abort();
    mpq_clear(back);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned long scale = data[0] % (DECIMAL_MAX_SCALE + 1);
    enum decimal_mode mode = (enum decimal_mode)((data[0] >> 4) % DECIMAL_MODES);
    const char *s = (const char *)data + 1;
    size_t len = size - 1;

    mpq_t q, r, lo, hi;
    mpq_inits(q, r, lo, hi, NULL);
    mpq_set_ui(q, 42, 1);
    const char *why = NULL;
    if (decimal_parse(q, s, len, &why) != 0) {
        if (!why || mpq_cmp_ui(q, 42, 1) != 0) /* a reason, and the value untouched */
            abort();
        mpq_clears(q, r, lo, hi, NULL);
        return 0;
    }
    long exact = decimal_exact_scale(q);
    if (exact < 0) /* a parsed decimal string always has a finite decimal form */
        abort();
    check_print(q, (unsigned long)exact);

    decimal_round(r, q, scale, mode);
    decimal_round(lo, q, scale, DECIMAL_FLOOR);
    decimal_round(hi, q, scale, DECIMAL_CEILING);
    long rs = decimal_exact_scale(r);
    if (rs < 0 || (unsigned long)rs > scale || mpq_cmp(lo, r) > 0 || mpq_cmp(r, hi) > 0 ||
        mpq_cmp(lo, q) > 0 || mpq_cmp(q, hi) > 0)
        abort();
    decimal_round(lo, r, scale, mode); /* idempotent */
    if (!mpq_equal(lo, r))
        abort();
    check_print(r, scale);
    mpq_clears(q, r, lo, hi, NULL);
    return 0;
}
