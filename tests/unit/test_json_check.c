/* Strict JSON checking: what RFC 8259 and strict UTF-8 allow passes, and
 * the scripts' parser decodes all of it (intake stores a body after the
 * check alone, and hooks decode it later); each malformed form intake once
 * accepted fails with its offset and reason; nesting past the limit is
 * told apart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "referee/error.h"
#include "referee/json_check.h"
#include "referee/script_api.h"

static int check(const char *s, size_t len, unsigned depth,
                 struct rf_json_problem *p)
{
    return rf_json_check(s, len, depth, p);
}

/* Checks a NUL-free text with the intake's limit of 100, and that the
 * scripts' parser decodes what the check let through. */
static void expect_ok(const char *s)
{
    struct rf_json_problem p;
    char err[96];
    int rc = check(s, strlen(s), 100, &p);
    cJSON *v;

    if (rc != 0) {
        print_error("refused %s: byte %zu: %s\n", s, p.offset, p.reason);
        fail();
    }
    v = rf_api_parse_json(s, strlen(s), err, sizeof(err));
    if (v == NULL) {
        print_error("checked but not decoded %s: %s\n", s, err);
        fail();
    }
    cJSON_Delete(v);
}

/* Checks len bytes and wants RF_EPARSE at `offset` for `reason`. */
static void expect_bad(const char *s, size_t len, size_t offset,
                       const char *reason)
{
    struct rf_json_problem p = {0, NULL};

    assert_int_equal(check(s, len, 100, &p), RF_EPARSE);
    assert_int_equal(p.offset, offset);
    assert_string_equal(p.reason, reason);
}

static void test_valid_json_passes(void **state)
{
    expect_ok("{}");
    expect_ok(" [ ] ");
    expect_ok(
        "\t\r\n{\"a\" : [1, -0, 0.5, -1.25e+10, 3E-2, 12345678901234567890,"
        " true, false, null, \"\"]}\n");
    expect_ok(
        "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\""); /* 2, 3, 4 bytes */
    expect_ok("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"");
    expect_ok("0");
    expect_ok("-0.0e0");
    expect_ok("\"\x7F\""); /* DEL is not a control character in JSON */
    expect_ok("[\"\\u0000\", 1e400, -1e-400, 123456789012345678901234567890]");
    expect_ok("{\"a\":1,\"a\":2}"); /* names repeat in RFC 8259 */
}

static void test_invalid_utf8_in_strings_is_refused(void **state)
{
    expect_bad("{\"a\":\"\xff\xfe\"}", 11, 6, "invalid UTF-8 in a string");
    expect_bad("\"\x80\"", 3, 1, "invalid UTF-8 in a string"); /* stray */
    expect_bad("\"\xC3\"", 3, 1, "invalid UTF-8 in a string"); /* short */
    expect_bad("\"\xED\xA0\x80\"", 5, 1, "invalid UTF-8 in a string");
    expect_bad("\"\xF4\x90\x80\x80\"", 6, 1, "invalid UTF-8 in a string");
}

static void test_overlong_utf8_is_refused(void **state)
{
    expect_bad("\"\xC0\xAF\"", 4, 1, "invalid UTF-8 in a string");
    expect_bad("\"\xE0\x80\xAF\"", 5, 1, "invalid UTF-8 in a string");
    expect_bad("\"\xF0\x80\x80\xAF\"", 6, 1, "invalid UTF-8 in a string");
}

static void test_raw_control_characters_in_strings_are_refused(void **state)
{
    expect_bad("[\"a\nb\"]", 7, 3, "a control character in a string");
    expect_bad("[\"a\tb\"]", 7, 3, "a control character in a string");
    expect_bad("[\"a\0b\"]", 7, 3, "a control character in a string");
}

static void test_leading_zeros_are_refused(void **state)
{
    expect_bad("[01]", 4, 2, "a number with a leading zero");
    expect_bad("-007", 4, 2, "a number with a leading zero");
    expect_bad("[1.]", 4, 3, "a malformed number");
    expect_bad("[.5]", 4, 1, "not a JSON value");
    expect_bad("[+1]", 4, 1, "not a JSON value");
    expect_bad("[1e]", 4, 3, "a malformed number");
    expect_bad("[-]", 3, 2, "a malformed number");
    expect_bad("0x1", 3, 1, "more than one value, or bytes after the value");
}

static void test_byte_order_mark_is_refused(void **state)
{
    expect_bad("\xEF\xBB\xBF{}", 5, 0, "a byte-order mark before the value");
}

static void test_escapes_must_be_json_escapes(void **state)
{
    expect_bad("\"\\x41\"", 6, 2, "an unknown escape in a string");
    expect_bad("\"\\u12g4\"", 8, 5, "a \\u escape without four hex digits");
    expect_bad("\"\\uDE00\"", 8, 7, "an unpaired surrogate escape");
    expect_bad("\"\\uD83D\"", 8, 7, "an unpaired surrogate escape");
    expect_bad("\"\\uD83D\\u0041\"", 14, 13, "an unpaired surrogate escape");
}

static void test_structure_errors(void **state)
{
    expect_bad("", 0, 0, "expected a value");
    expect_bad("   ", 3, 3, "expected a value");
    expect_bad("{} {}", 5, 3, "more than one value, or bytes after the value");
    expect_bad("[1,]", 4, 3, "not a JSON value");
    expect_bad("[1 2]", 5, 3, "expected ',' or ']'");
    expect_bad("{\"a\" 1}", 7, 5, "expected ':' after an object key");
    expect_bad("{a:1}", 5, 1, "expected a string as an object key");
    expect_bad("{\"a\":1,}", 8, 7, "expected a string as an object key");
    expect_bad("[tru]", 5, 1, "not a JSON value");
    expect_bad("\"abc", 4, 4, "an unterminated string");
    expect_bad("[1", 2, 2, "expected ',' or ']'");
    expect_bad("\x0c{}", 3, 0, "not a JSON value"); /* form feed */
    expect_bad("{}\0", 3, 2, "more than one value, or bytes after the value");
}

/* '[' * n + ']' * n into buf. */
static size_t nested(char *buf, size_t n)
{
    memset(buf, '[', n);
    memset(buf + n, ']', n);
    return 2 * n;
}

static void test_nesting_past_the_limit_is_told_apart(void **state)
{
    static char buf[4000];
    struct rf_json_problem p;
    size_t len;

    len = nested(buf, 100);
    buf[len] = '\0';
    expect_ok(buf); /* the deepest allowed, decoded too */
    len = nested(buf, 101);
    assert_int_equal(check(buf, len, 100, &p), RF_ELIMIT);
    assert_int_equal(p.offset, 100);
    assert_string_equal(p.reason, "arrays and objects nested too deep");
    /* The reported case: 1000 deep. */
    len = nested(buf, 1000);
    assert_int_equal(check(buf, len, 100, &p), RF_ELIMIT);
    assert_int_equal(check("{\"a\":{\"b\":[{}]}}", 16, 4, &p), 0);
    assert_int_equal(check("{\"a\":{\"b\":[{}]}}", 16, 3, &p), RF_ELIMIT);
    /* Limits past the checker's own are lowered to it. */
    len = nested(buf, 1001);
    assert_int_equal(check(buf, len, 5000, &p), RF_ELIMIT);
    assert_int_equal(p.offset, RF_JSON_CHECK_DEPTH_LIMIT);
}

static void test_reads_nothing_past_len(void **state)
{
    /* A valid prefix of a longer buffer is checked on its own. */
    assert_int_equal(check("[1]xyz", 3, 100, NULL), 0);
    assert_int_equal(check("\"ab\"", 3, 100, NULL), RF_EPARSE);
    assert_int_equal(check("tru", 3, 100, NULL), RF_EPARSE);
    assert_int_equal(check("\"\\u00", 5, 100, NULL), RF_EPARSE);
    assert_int_equal(check("\"\xE2\x82\"", 3, 100, NULL), RF_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_json_passes),
        cmocka_unit_test(test_invalid_utf8_in_strings_is_refused),
        cmocka_unit_test(test_overlong_utf8_is_refused),
        cmocka_unit_test(test_raw_control_characters_in_strings_are_refused),
        cmocka_unit_test(test_leading_zeros_are_refused),
        cmocka_unit_test(test_byte_order_mark_is_refused),
        cmocka_unit_test(test_escapes_must_be_json_escapes),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_nesting_past_the_limit_is_told_apart),
        cmocka_unit_test(test_reads_nothing_past_len),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
