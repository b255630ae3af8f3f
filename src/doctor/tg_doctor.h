/* tg_doctor: `tlsgate doctor` — what this machine offers to the key providers. */
#ifndef TG_DOCTOR_H
#define TG_DOCTOR_H

/* argv[0] is "doctor". Returns 0 (the report is informational), 2 on usage. */
int tg_doctor_main(int argc, char **argv);

#endif
