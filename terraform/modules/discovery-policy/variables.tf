variable "regions" {
  description = "Regions the collector discovers EKS node groups and ECS GPU tasks in. Empty: the provider's region."
  type        = list(string)
  default     = []
}
