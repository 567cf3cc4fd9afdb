/*
 * fuzz_policy - libFuzzer target for the policy loader: arbitrary bytes go to
 * policy_load_mem() exactly as a policy file's content would. Any crash,
 * sanitizer report or leak is a finding. A successful load must give a
 * complete policy (the invariants below are checked), and a failed one must
 * have explained itself as "name:line: message" lines.
 */
#include "policy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    buf errors;
    buf_init(&errors, 1 << 20);
    policy *p = policy_load_mem("fuzz.yaml", data, size, &errors);
    if (p != NULL) {
        if (errors.len != 0 || p->state_dir == NULL || p->quarantine_dir == NULL ||
            p->mail.subject_tag == NULL || p->mail.limits.max_depth == 0 ||
            p->mail.limits.max_depth > 100 ||
            p->mail.limits.max_header_bytes > p->mail.limits.max_message_bytes)
            abort();
        for (size_t i = 0; i < p->n_zones; i++)
            if (p->zones[i].name == NULL || p->zones[i].kind == NULL)
                abort();
        for (size_t i = 0; i < p->n_internal_domains; i++)
            (void)policy_domain_is_internal(p, p->internal_domains[i]);
        (void)policy_domain_is_internal(p, "a.example");
    } else {
        if (errors.len == 0 || errors.p[errors.len - 1] != '\n' ||
            strncmp((const char *)errors.p, "fuzz.yaml:", 10) != 0)
            abort();
    }
    policy_free(p);
    buf_free(&errors);
    return 0;
}
