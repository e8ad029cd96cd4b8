variable "description" {
  description = "The key's description."
  type        = string
}

variable "alias" {
  description = "The key's alias, without the alias/ prefix."
  type        = string
}

variable "tags" {
  description = "Tags for the key."
  type        = map(string)
  default     = {}
}
