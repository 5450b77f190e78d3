/* The `program` table of tenant.lua: the public side of a tenant's
 * referral program.
 *
 *     program = {
 *       landing = "https://acme.example/refer?code={code}",
 *       link = "https://go.acme.example/r/{code}",
 *       code_field = "Referral_Code", link_field = "Referral_Link",
 *       secret = env("ACME__REFERRALS_SECRET"),
 *       form_per_minute = 10,
 *     }
 */
#include "referee/error.h"
#include "referee/reader.h"
#include "referee/tenant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <openssl/crypto.h>

#include "internal.h"

#define FORM_PER_MINUTE_DEFAULT 10

static const char *const program_keys[] = {
    "landing", "link", "code_field", "link_field", "secret",
    "form_per_minute", NULL};

void rf__tenant_program_free(struct rf_tenant_program *p)
{
    if (p == NULL) {
        return;
    }
    free(p->landing);
    free(p->link);
    free(p->code_field);
    free(p->link_field);
    if (p->secret) {
        OPENSSL_cleanse(p->secret, p->secret_len);
        free(p->secret);
    }
    free(p);
}

/* An http(s) URL holding "{code}" once. */
static int template_ok(const char *s)
{
    const char *c = strstr(s, "{code}");

    return (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0) &&
           c != NULL && strstr(c + 1, "{code}") == NULL &&
           strpbrk(s, " \r\n\t\"<>") == NULL;
}

static int read_fields(struct rf_reader *r, struct rf_tenant_program *p)
{
    unsigned long long rate = 0;
    char *secret = NULL;
    int rc = rf_reader_known_keys(r, -1, "program", program_keys);

    if (rc == 0) {
        rc = rf_reader_string(r, -1, "program", "landing", &p->landing, 0);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "program", "link", &p->link, 0);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "program", "code_field", &p->code_field,
                              0);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "program", "link_field", &p->link_field,
                              0);
    }
    if (rc == 0) {
        rc = rf_reader_uint(r, -1, "program", "form_per_minute", 1, 100000,
                            &rate);
    }
    if (rc == 0) {
        rc = rf_reader_string(r, -1, "program", "secret", &secret, 0);
    }
    if (rc == 0 && secret != NULL) {
        rc = rf__tenant_secret(r, "program.secret", secret, &p->secret,
                               &p->secret_len);
    }
    if (secret != NULL) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
    p->form_per_minute = rate ? (unsigned)rate : FORM_PER_MINUTE_DEFAULT;
    return rc;
}

int rf__tenant_read_program(struct rf_reader *r, struct rf_tenant *t)
{
    struct rf_tenant_program *p;
    int rc, type = rf_reader_get(r->L, -1, "program");

    if (type == LUA_TNIL) {
        lua_pop(r->L, 1);
        return 0;
    }
    if (type != LUA_TTABLE) {
        lua_pop(r->L, 1);
        return rf_reader_fail(r, "program", "expected a table");
    }
    if ((p = calloc(1, sizeof(*p))) == NULL) {
        lua_pop(r->L, 1);
        return RF_ENOMEM;
    }
    t->program = p;
    rc = read_fields(r, p);
    lua_pop(r->L, 1);
    if (rc != 0) {
        return rc;
    }
    if (p->landing != NULL && !template_ok(p->landing)) {
        return rf_reader_fail(r, "program.landing",
                              "expected an http(s) URL with {code} once");
    }
    if (p->link != NULL && !template_ok(p->link)) {
        return rf_reader_fail(r, "program.link",
                              "expected an http(s) URL with {code} once");
    }
    if ((p->link_field != NULL) != 0 && p->link == NULL) {
        return rf_reader_fail(r, "program.link_field",
                              "needs program.link to build the link from");
    }
    return 0;
}
