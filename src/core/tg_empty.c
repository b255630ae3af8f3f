/* Placeholder translation unit for a module library that has no sources yet. */
typedef int tg_empty_translation_unit;
