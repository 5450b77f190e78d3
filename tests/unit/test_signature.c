/* Standard Webhooks signature checks: good, tampered, expired, rotated,
 * missing headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "referee/signature.h"

/* The expected signature was computed independently with Python's hmac
 * module over "id.ts.body" with the base64-decoded key. */
static const char key_b64[] = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
static unsigned char key[24];
static const char id[] = "msg_p5jXN8AQM9LWM0D4loKWxJek";
static const char ts[] = "1614265330";
static const char body[] = "{\"test\": 2432232314}";
static const char good[] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
static const long long now = 1614265330;

static int decode_key(void **state)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = 0;
    unsigned bits = 0, acc = 0;

    for (const char *p = key_b64; *p; p++) {
        acc = acc << 6 | (unsigned)(strchr(tbl, *p) - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            key[n++] = (unsigned char)(acc >> bits);
        }
    }
    assert_int_equal(n, sizeof(key));
    return 0;
}

static int verify(const char *sigs, const char *b, const char *t, long long at)
{
    return rf_signature_verify(key, sizeof(key), id, t, sigs, b, strlen(b),
                               at, 300);
}

static void test_good_signature(void **state)
{
    assert_int_equal(verify(good, body, ts, now), RF_SIG_OK);
}

static void test_sign_matches_vector(void **state)
{
    char out[RF_SIG_MAX];

    assert_int_equal(rf_signature_sign(key, sizeof(key), id, ts, body,
                                       strlen(body), out),
                     0);
    assert_string_equal(out, good);
}

/* Each thread keeps the last key's context: signing under keys that take
 * turns, one longer than the kept size and one a prefix of another, must
 * give each key's own signature every time (vectors from Python's hmac). */
static void test_keys_taking_turns(void **state)
{
    static const char *const want[] = {
        "v1,frM35V2Z51bxs4v81I6TpLnscXkhXtKLP/7WPYVyj3A=",
        "v1,8bpGvxva0GuhTsMBqD8+wRO+5L5hGLsY8eiuI3/NB5E=",
        "v1,+uct94jV+On4rTGKP60G67FXKL9kWM1Q0vZtCRVnLsI="};
    static const int order[] = {0, 1, 0, 2, 2, 1, 1, 0, 2};
    unsigned char keys[3][80];
    const size_t lens[3] = {32, 80, 31};
    char out[RF_SIG_MAX];

    for (int i = 0; i < 80; i++) {
        keys[0][i] = (unsigned char)(i + 1);
        keys[1][i] = (unsigned char)(i * 7);
        keys[2][i] = (unsigned char)(i + 1);
    }
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        int k = order[i];

        assert_int_equal(rf_signature_sign(keys[k], lens[k], id, ts, body,
                                           strlen(body), out),
                         0);
        assert_string_equal(out, want[k]);
        /* The test key between them: the cache is switched every time. */
        assert_int_equal(verify(good, body, ts, now), RF_SIG_OK);
        assert_int_equal(rf_signature_verify(keys[k], lens[k], id, ts, good,
                                             body, strlen(body), now, 300),
                         RF_SIG_MISMATCH);
    }
}

static void test_tampered_body(void **state)
{
    assert_int_equal(verify(good, "{\"test\": 2432232315}", ts, now),
                     RF_SIG_MISMATCH);
}

static void test_tampered_signature(void **state)
{
    char bad[] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=";

    assert_int_equal(verify(bad, body, ts, now), RF_SIG_MISMATCH);
}

static void test_expired_and_future(void **state)
{
    assert_int_equal(verify(good, body, ts, now + 301),
                     RF_SIG_TIMESTAMP_EXPIRED);
    assert_int_equal(verify(good, body, ts, now - 301),
                     RF_SIG_TIMESTAMP_EXPIRED);
    assert_int_equal(verify(good, body, ts, now + 300), RF_SIG_OK);
}

static void test_rotated_secrets(void **state)
{
    char both[200];

    snprintf(both, sizeof(both), "%s %s",
             "v1,bm90IHRoZSByaWdodCBvbmUgYXQgYWxsLCBzb3JyeSEhISE=", good);
    assert_int_equal(verify(both, body, ts, now), RF_SIG_OK);
    snprintf(both, sizeof(both), "%s v1a,whatever", good);
    assert_int_equal(verify(both, body, ts, now), RF_SIG_OK);
}

static void test_wrong_version_prefix(void **state)
{
    assert_int_equal(verify("v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                            body, ts, now),
                     RF_SIG_MISMATCH);
}

static void test_missing_headers(void **state)
{
    assert_int_equal(rf_signature_verify(key, sizeof(key), NULL, ts, good,
                                         body, strlen(body), now, 300),
                     RF_SIG_MISSING);
    assert_int_equal(rf_signature_verify(key, sizeof(key), id, NULL, good,
                                         body, strlen(body), now, 300),
                     RF_SIG_MISSING);
    assert_int_equal(rf_signature_verify(key, sizeof(key), id, ts, NULL, body,
                                         strlen(body), now, 300),
                     RF_SIG_MISSING);
}

static void test_bad_timestamp(void **state)
{
    assert_int_equal(verify(good, body, "16142x5330", now),
                     RF_SIG_TIMESTAMP_INVALID);
    assert_int_equal(verify(good, body, "", now), RF_SIG_TIMESTAMP_INVALID);
    assert_string_equal(rf_signature_code(RF_SIG_TIMESTAMP_INVALID),
                        "signature_timestamp_invalid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_signature),
        cmocka_unit_test(test_sign_matches_vector),
        cmocka_unit_test(test_keys_taking_turns),
        cmocka_unit_test(test_tampered_body),
        cmocka_unit_test(test_tampered_signature),
        cmocka_unit_test(test_expired_and_future),
        cmocka_unit_test(test_rotated_secrets),
        cmocka_unit_test(test_wrong_version_prefix),
        cmocka_unit_test(test_missing_headers),
        cmocka_unit_test(test_bad_timestamp),
    };

    return cmocka_run_group_tests(tests, decode_key, NULL);
}
