/* Shared between the files of the tenant module. */
#ifndef REFEREE_TENANT_INTERNAL_H
#define REFEREE_TENANT_INTERNAL_H

#include "referee/reader.h"
#include "referee/tenant.h"

/* Reads the `sources` table of the settings at the top of r->L. */
int rf__tenant_read_sources(struct rf_reader *r, struct rf_tenant *t);

/* Reads the list `allowed_hosts` of the table at the top of r->L (whose
 * own path is `parent`, "" for the top) into allow[*nallow...] (room for
 * RF_TENANT_HOSTS_MAX), advancing *nallow. A missing field is no hosts.
 * Returns 0 or RF_ECONFIG. */
int rf__tenant_read_hosts(struct rf_reader *r, const char *parent,
                          struct rf_http_allow *allow, size_t *nallow);

/* Decodes a signing secret ("whsec_" + base64, or plain text) of setting
 * `path` into a new buffer (*out, *len). Returns 0 or RF_ECONFIG. */
int rf__tenant_secret(struct rf_reader *r, const char *path, const char *s,
                      unsigned char **out, size_t *len);

/* Reads the optional `program` table into t->program (program.c). */
int rf__tenant_read_program(struct rf_reader *r, struct rf_tenant *t);

/* Frees t->program. Accepts NULL. */
void rf__tenant_program_free(struct rf_tenant_program *p);

/* Reads the optional `zoho` table into t->zoho (zoho.c). */
int rf__tenant_read_zoho(struct rf_reader *r, struct rf_tenant *t);

/* Frees t->zoho's contents and the struct (zoho.c). Accepts NULL. */
void rf__tenant_zoho_free(struct rf_tenant_zoho *z);

#endif
