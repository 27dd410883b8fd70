/* ISO 4217 minor units (the number of fraction digits of a currency's amounts), for
 * decimal.scale and d:money. The list is ISO 4217's table A.1 of active codes (amendment 179,
 * 2024: ZWG and XCG added; HRK gone with Croatia's euro). Funds and metals without a minor
 * unit (XAU, XDR, XTS, ...) are listed as -2 so they are told apart from unknown codes. */
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

struct currency {
    char code[4];
    int scale;
};

/* Sorted by code: looked up with bsearch. */
static const struct currency currencies[] = {
    {"AED", 2},  {"AFN", 2},  {"ALL", 2},  {"AMD", 2},  {"ANG", 2},  {"AOA", 2},  {"ARS", 2},
    {"AUD", 2},  {"AWG", 2},  {"AZN", 2},  {"BAM", 2},  {"BBD", 2},  {"BDT", 2},  {"BGN", 2},
    {"BHD", 3},  {"BIF", 0},  {"BMD", 2},  {"BND", 2},  {"BOB", 2},  {"BOV", 2},  {"BRL", 2},
    {"BSD", 2},  {"BTN", 2},  {"BWP", 2},  {"BYN", 2},  {"BZD", 2},  {"CAD", 2},  {"CDF", 2},
    {"CHE", 2},  {"CHF", 2},  {"CHW", 2},  {"CLF", 4},  {"CLP", 0},  {"CNY", 2},  {"COP", 2},
    {"COU", 2},  {"CRC", 2},  {"CUC", 2},  {"CUP", 2},  {"CVE", 2},  {"CZK", 2},  {"DJF", 0},
    {"DKK", 2},  {"DOP", 2},  {"DZD", 2},  {"EGP", 2},  {"ERN", 2},  {"ETB", 2},  {"EUR", 2},
    {"FJD", 2},  {"FKP", 2},  {"GBP", 2},  {"GEL", 2},  {"GHS", 2},  {"GIP", 2},  {"GMD", 2},
    {"GNF", 0},  {"GTQ", 2},  {"GYD", 2},  {"HKD", 2},  {"HNL", 2},  {"HTG", 2},  {"HUF", 2},
    {"IDR", 2},  {"ILS", 2},  {"INR", 2},  {"IQD", 3},  {"IRR", 2},  {"ISK", 0},  {"JMD", 2},
    {"JOD", 3},  {"JPY", 0},  {"KES", 2},  {"KGS", 2},  {"KHR", 2},  {"KMF", 0},  {"KPW", 2},
    {"KRW", 0},  {"KWD", 3},  {"KYD", 2},  {"KZT", 2},  {"LAK", 2},  {"LBP", 2},  {"LKR", 2},
    {"LRD", 2},  {"LSL", 2},  {"LYD", 3},  {"MAD", 2},  {"MDL", 2},  {"MGA", 2},  {"MKD", 2},
    {"MMK", 2},  {"MNT", 2},  {"MOP", 2},  {"MRU", 2},  {"MUR", 2},  {"MVR", 2},  {"MWK", 2},
    {"MXN", 2},  {"MXV", 2},  {"MYR", 2},  {"MZN", 2},  {"NAD", 2},  {"NGN", 2},  {"NIO", 2},
    {"NOK", 2},  {"NPR", 2},  {"NZD", 2},  {"OMR", 3},  {"PAB", 2},  {"PEN", 2},  {"PGK", 2},
    {"PHP", 2},  {"PKR", 2},  {"PLN", 2},  {"PYG", 0},  {"QAR", 2},  {"RON", 2},  {"RSD", 2},
    {"RUB", 2},  {"RWF", 0},  {"SAR", 2},  {"SBD", 2},  {"SCR", 2},  {"SDG", 2},  {"SEK", 2},
    {"SGD", 2},  {"SHP", 2},  {"SLE", 2},  {"SLL", 2},  {"SOS", 2},  {"SRD", 2},  {"SSP", 2},
    {"STN", 2},  {"SVC", 2},  {"SYP", 2},  {"SZL", 2},  {"THB", 2},  {"TJS", 2},  {"TMT", 2},
    {"TND", 3},  {"TOP", 2},  {"TRY", 2},  {"TTD", 2},  {"TWD", 2},  {"TZS", 2},  {"UAH", 2},
    {"UGX", 0},  {"USD", 2},  {"USN", 2},  {"UYI", 0},  {"UYU", 2},  {"UYW", 4},  {"UZS", 2},
    {"VED", 2},  {"VES", 2},  {"VND", 0},  {"VUV", 0},  {"WST", 2},  {"XAF", 0},  {"XAG", -2},
    {"XAU", -2}, {"XBA", -2}, {"XBB", -2}, {"XBC", -2}, {"XBD", -2}, {"XCD", 2},  {"XCG", 2},
    {"XDR", -2}, {"XOF", 0},  {"XPD", -2}, {"XPF", 0},  {"XPT", -2}, {"XSU", -2}, {"XTS", -2},
    {"XUA", -2}, {"XXX", -2}, {"YER", 2},  {"ZAR", 2},  {"ZMW", 2},  {"ZWG", 2},  {"ZWL", 2},
};

static int by_code(const void *key, const void *elt)
{
    return strcmp(key, ((const struct currency *)elt)->code);
}

int decimal_currency_scale(const char *code, size_t len)
{
    if (len != 3)
        return -1;
    char key[4] = {code[0], code[1], code[2], '\0'};
    const struct currency *c = bsearch(key, currencies, sizeof currencies / sizeof currencies[0],
                                       sizeof currencies[0], by_code);
    return c ? c->scale : -1;
}

int decimal_currency_at(size_t i, const char **code)
{
    if (i >= sizeof currencies / sizeof currencies[0])
        return -3;
    *code = currencies[i].code;
    return currencies[i].scale;
}
